#include "deliver/deliver.hpp"

#include <spdlog/spdlog.h>

#include <random>
#include <thread>

#include "common/error.hpp"

namespace kubetrail::deliver {

std::map<std::string, HandlerSlot> create_handlers(const config::Config& cfg, plugin::PluginLoader& loader,
                                                   Metrics* metrics, const SleepFn& sleep) {
  std::map<std::string, HandlerSlot> out;
  for (const auto& h : cfg.handlers) {
    HandlerSlot slot;
    slot.retry = h.retry;
    // A create() that says RETRY (the plugin's broker is not up yet) is
    // tried again as deliveries are: the handler's attempts and backoff.
    for (uint32_t attempt = 1;; ++attempt) {
      try {
        auto lib = loader.load(h.plugin);
        if (h.inventory_every.count() > 0 && !plugin::Handler::takes_snapshots(lib->info()))
          throw Error("handler \"" + h.name + "\": inventory_every needs a plugin built against plugin ABI 1.2 or " +
                      "later, and " + lib->info().path + " was built against " + std::to_string(lib->info().abi_major) +
                      "." + std::to_string(lib->info().abi_minor) +
                      " (it would read Snapshot change sets as Modified)");
        slot.handler = std::make_unique<plugin::Handler>(h.name, lib, h.config, metrics);
        break;
      } catch (const plugin::TransientCreateError& e) {
        if (attempt >= std::max<uint32_t>(1, h.retry.attempts)) {
          slot.error = h.where + ": " + e.what() + ", gave up after " + std::to_string(attempt) + " attempts";
          break;
        }
        auto delay = backoff(h.retry, attempt, 0);
        spdlog::warn("{}: {}; trying again in {} ms", h.where, e.what(), delay.count());
        if (sleep)
          sleep(delay);
        else
          std::this_thread::sleep_for(delay);
      } catch (const Error& e) {
        slot.error = h.where + ": " + e.what();
        break;
      }
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

}  // namespace kubetrail::deliver
