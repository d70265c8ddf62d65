// The delivery half of the pipeline, shared by `replay` and `run`: plugins
// loaded, handlers created (a failing one reported, the others kept),
// routes, the dispatcher, and the [watch] events filter.
#pragma once

#include <map>
#include <string>

#include "cli/common.hpp"
#include "deliver/deliver.hpp"
#include "route/route.hpp"
#include "server/metrics.hpp"

namespace kubetrail::cli {

class Pipeline {
 public:
  Pipeline(const config::Config& cfg, const Args& args);

  // Routes and delivers one change set (if its type is in [watch] events).
  // True when every handler took it.
  bool deliver(const diff::ChangeSet& cs);
  // Flushes every handler (shutdown). True when all flushed.
  bool flush();

  bool handler_errors() const noexcept { return handler_errors_; }
  const deliver::Dispatcher::Stats& stats() const noexcept { return dispatcher_.stats(); }
  server::Metrics& metrics() noexcept { return metrics_; }

 private:
  const config::Config& cfg_;
  server::Metrics metrics_;
  plugin::PluginLoader loader_;
  std::map<std::string, deliver::HandlerSlot> handlers_;
  route::Router router_;
  deliver::Dispatcher dispatcher_;
  bool handler_errors_ = false;
};

}  // namespace kubetrail::cli
