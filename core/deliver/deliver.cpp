#include "deliver/deliver.hpp"

#include <spdlog/spdlog.h>

#include <random>
#include <thread>

#include "common/error.hpp"

namespace kubetrail::deliver {

std::map<std::string, HandlerSlot> create_handlers(const config::Config& cfg, plugin::PluginLoader& loader,
                                                   Metrics* metrics) {
  std::map<std::string, HandlerSlot> out;
  for (const auto& h : cfg.handlers) {
    HandlerSlot slot;
    slot.retry = h.retry;
    try {
      auto lib = loader.load(h.plugin);
      slot.handler = std::make_unique<plugin::Handler>(h.name, lib, h.config, metrics);
    } catch (const Error& e) {
      slot.error = h.where + ": " + e.what();
    }
    out.emplace(h.name, std::move(slot));
  }
  return out;
}

HandlerMetrics define_handler_metrics(Metrics& metrics, const std::string& handler) {
  auto result = [&](const char* r) {
    return metrics.define(MetricKind::counter, "kubetrail_handler_deliveries_total",
                          "handler calls by result (ok, stop, retry, fail)", {{"handler", handler}, {"result", r}});
  };
  HandlerMetrics hm{result("ok"), result("stop"), result("retry"), result("fail"), -1};
  hm.latency = metrics.define(MetricKind::histogram, "kubetrail_handler_latency_seconds",
                              "time a handler took per call", {{"handler", handler}});
  return hm;
}

std::chrono::milliseconds backoff(const config::RetryPolicy& p, uint32_t attempt, uint32_t plugin_retry_after_ms) {
  double base = p.initial_ms;
  for (uint32_t i = 1; i < attempt && base < p.max_ms; ++i) base *= 2;
  base = std::min<double>(base, p.max_ms);
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  auto ms = static_cast<int64_t>(base * jitter(rng));
  ms = std::max<int64_t>(ms, plugin_retry_after_ms);
  return std::chrono::milliseconds(ms);
}

Dispatcher::Dispatcher(std::map<std::string, HandlerSlot>& handlers, const route::Router& router, Metrics* metrics,
                       SleepFn sleep)
    : handlers_(handlers), router_(router), metrics_(metrics), sleep_(std::move(sleep)) {
  if (!sleep_) sleep_ = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  if (!metrics_) return;
  m_unrouted_ = metrics_->define(MetricKind::counter, "kubetrail_change_sets_unrouted_total",
                                 "change sets that matched no route");
  for (const auto& [name, slot] : handlers_) handler_metrics_[name] = define_handler_metrics(*metrics_, name);
}

bool Dispatcher::dispatch(const model::ChangeSet& cs) {
  ++stats_.dispatched;
  auto routes = router_.match(cs);
  if (routes.empty()) {
    ++stats_.unrouted;
    if (metrics_) metrics_->record(m_unrouted_, 1);
    spdlog::debug("change set {} matches no route", cs.id);
    return true;
  }
  plugin::AbiChangeSet item(cs);
  bool all = true;
  for (const route::Route* r : routes) {
    for (const auto& name : r->chain) {
      bool stop = false;
      if (!deliver_one(name, item, stop)) all = false;
      if (stop) break;
    }
  }
  return all;
}

bool Dispatcher::deliver_one(const std::string& name, const plugin::AbiChangeSet& item, bool& stop) {
  HandlerSlot& slot = handlers_.at(name);
  const model::ChangeSet& cs = item.change_set();
  if (!slot.handler) {
    ++stats_.failed;
    spdlog::error("handler \"{}\" is not running ({}); change set {} not delivered to it", name, slot.error, cs.id);
    return false;
  }
  const plugin::AbiChangeSet* items[] = {&item};
  const HandlerMetrics* hm = metrics_ ? &handler_metrics_[name] : nullptr;
  for (uint32_t attempt = 1;; ++attempt) {
    auto started = std::chrono::steady_clock::now();
    plugin::Outcome out = slot.handler->deliver(items);
    if (hm) {
      metrics_->record(hm->latency, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      metrics_->record(hm->for_status(out.status), 1);
    }
    switch (out.status) {
      case KUBETRAIL_OK:
      case KUBETRAIL_STOP:
        ++stats_.delivered;
        stop = out.status == KUBETRAIL_STOP;
        return true;
      case KUBETRAIL_RETRY:
        if (attempt < slot.retry.attempts) {
          auto delay = backoff(slot.retry, attempt, out.retry_after_ms);
          spdlog::warn("handler \"{}\": change set {}: attempt {}/{} failed, retrying in {} ms: {}", name, cs.id,
                       attempt, slot.retry.attempts, delay.count(), out.message);
          sleep_(delay);
          continue;
        }
        ++stats_.failed;
        spdlog::error("handler \"{}\": change set {}: giving up after {} attempts: {}", name, cs.id, attempt,
                      out.message);
        return false;
      default:
        ++stats_.failed;
        spdlog::error("handler \"{}\": change set {}: failed: {}", name, cs.id, out.message);
        return false;
    }
  }
}

}  // namespace kubetrail::deliver
