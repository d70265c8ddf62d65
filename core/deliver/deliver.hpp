// What the delivery engine (deliver/engine.hpp) is made of: the handlers
// created from the config, the retry backoff, per-handler metrics.
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

using SleepFn = std::function<void(std::chrono::milliseconds)>;

// Creates every configured handler. A handler that cannot be created is kept
// as a slot with its error (reported by the caller), so that the others run;
// one whose create() says RETRY is tried again first, with the handler's
// retry policy (`sleep` waits between attempts; null: it sleeps).
std::map<std::string, HandlerSlot> create_handlers(const config::Config& cfg, plugin::PluginLoader& loader,
                                                   Metrics* metrics, const SleepFn& sleep = nullptr);

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

}  // namespace kubetrail::deliver
