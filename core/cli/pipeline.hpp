// The delivery half of the pipeline, shared by `replay` and `run`: plugins
// loaded, handlers created (a failing one reported, the others kept),
// routes, the delivery engine (inline until start_async()), and the [watch]
// events filter.
#pragma once

#include <map>
#include <string>

#include "cli/common.hpp"
#include "common/metrics.hpp"
#include "deliver/deliver.hpp"
#include "deliver/engine.hpp"
#include "route/route.hpp"

namespace kubetrail::cli {

class Pipeline {
 public:
  // `metrics` outlives the pipeline: a reload replaces the pipeline, and the
  // informers keep recording into the same registry.
  Pipeline(const config::Config& cfg, const Args& args, Metrics& metrics);

  // From here on, delivery is asynchronous: per-handler queues and threads,
  // with the durable outbox when `outbox` is given (kubetrail run).
  // `progress` (leader election) learns what has been delivered.
  void start_async(state::StateStore* outbox, ha::DeliveryProgress* progress = nullptr);

  // Whether [watch] events lets this change set through (a Snapshot
  // always: a handler asked for it).
  bool accepts(const model::ChangeSet& cs) const;
  // Routes and delivers one change set (if its type is in [watch] events).
  // Synchronous: true when every handler took it. Asynchronous: queued.
  bool deliver(const model::ChangeSet& cs);
  // deliver() for a batch: asynchronous with an outbox, the batch's outbox
  // rows in one transaction, all queued or (a kubetrail::Error) none
  // (Engine::submit_batch: the change sets are moved, and on a throw
  // `batch` is as given). `kept`, if given, receives the whole batch in
  // order - what [watch] events leaves out too - shared with delivery, for
  // the history: the batch's journal entries are retired once it is kept
  // there (state/history_writer.hpp).
  bool deliver_batch(std::vector<model::ChangeSet>&& batch,
                     std::vector<std::shared_ptr<const model::ChangeSet>>* kept = nullptr);
  // Shutdown: delivers what is queued (asynchronous: for up to `drain`),
  // then flushes every handler. True when all flushed.
  bool flush(std::chrono::milliseconds drain = std::chrono::seconds(10), uint32_t reason = KUBETRAIL_FLUSH_SHUTDOWN);
  size_t queued() const { return engine_->queued(); }
  std::string stuck(std::chrono::steady_clock::duration limit) const { return engine_->stuck(limit); }
  void outbox_grew(const std::string& handler) { engine_->outbox_grew(handler); }

  bool handler_errors() const noexcept { return handler_errors_; }
  const deliver::Engine::Stats& stats() const noexcept { return engine_->stats(); }
  Metrics& metrics() noexcept { return metrics_; }
  const route::Router& router() const noexcept { return router_; }
  // The created handler of that name, or null (not configured, or its
  // creation failed: logged by the constructor).
  const plugin::Handler* handler(const std::string& name) const {
    auto it = handlers_.find(name);
    return it == handlers_.end() ? nullptr : it->second.handler.get();
  }
  const config::Config& config() const noexcept { return cfg_; }

 private:
  const config::Config& cfg_;
  Metrics& metrics_;
  plugin::PluginLoader loader_;
  std::map<std::string, deliver::HandlerSlot> handlers_;
  route::Router router_;
  std::unique_ptr<deliver::Engine> engine_;
  bool handler_errors_ = false;
};

}  // namespace kubetrail::cli
