// Delivery: hands each change set to the handler chains its routes name, in
// order, with retries and backoff. A STOP ends a chain; a FAIL is logged and
// counted and the chain goes on (one failing handler never takes down the
// others).
//
// This is the synchronous first stage of delivery used by `replay`; per
// handler queues and the durable outbox build on it (see docs/ROADMAP.md).
// Not thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "config/config.hpp"
#include "plugin/plugin_host.hpp"
#include "route/route.hpp"

namespace kubetrail::deliver {

struct HandlerSlot {
  std::unique_ptr<plugin::Handler> handler;  // null when the handler could not be created
  config::RetryPolicy retry;
  std::string error;  // why it could not be created
};

// Creates every configured handler. A handler that cannot be created is kept
// as a slot with its error (reported by the caller), so that the others run.
std::map<std::string, HandlerSlot> create_handlers(const config::Config& cfg, plugin::PluginLoader& loader,
                                                   Metrics* metrics);

// The delay before retry number `attempt` (1-based): exponential from
// initial_ms, capped at max_ms, with ±20% jitter; a plugin's retry-after wins
// when it is longer.
std::chrono::milliseconds backoff(const config::RetryPolicy& p, uint32_t attempt, uint32_t plugin_retry_after_ms);

// Per-handler delivery metrics: calls by result, and call latency.
struct HandlerMetrics {
  int32_t ok = -1, stop = -1, retry = -1, fail = -1, latency = -1;
  int32_t for_status(int32_t status) const noexcept {
    return status == KUBETRAIL_OK ? ok : status == KUBETRAIL_STOP ? stop : status == KUBETRAIL_RETRY ? retry : fail;
  }
};
HandlerMetrics define_handler_metrics(Metrics& metrics, const std::string& handler);

class Dispatcher {
 public:
  using SleepFn = std::function<void(std::chrono::milliseconds)>;
  Dispatcher(std::map<std::string, HandlerSlot>& handlers, const route::Router& router, Metrics* metrics,
             SleepFn sleep = nullptr);

  // Delivers along every route the change set matches. True when every
  // handler took it (OK or STOP).
  bool dispatch(const model::ChangeSet& cs);

  struct Stats {
    uint64_t dispatched = 0;
    uint64_t unrouted = 0;
    uint64_t delivered = 0;  // handler deliveries that succeeded
    uint64_t failed = 0;     // handler deliveries that failed for good
  };
  const Stats& stats() const noexcept { return stats_; }

 private:
  bool deliver_one(const std::string& handler, const plugin::AbiChangeSet& item, bool& stop);

  std::map<std::string, HandlerSlot>& handlers_;
  const route::Router& router_;
  Metrics* metrics_;
  SleepFn sleep_;
  Stats stats_;
  int32_t m_unrouted_ = -1;
  std::map<std::string, HandlerMetrics> handler_metrics_;
};

}  // namespace kubetrail::deliver
