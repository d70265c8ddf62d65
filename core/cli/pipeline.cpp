#include "cli/pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

namespace kubetrail::cli {

namespace {
std::vector<std::string> handler_names(const config::Config& cfg) {
  std::vector<std::string> names;
  for (const auto& h : cfg.handlers) names.push_back(h.name);
  return names;
}
}  // namespace

Pipeline::Pipeline(const config::Config& cfg, const Args& args, Metrics& metrics)
    : cfg_(cfg),
      metrics_(metrics),
      loader_(plugin_dir(cfg, args)),
      handlers_(deliver::create_handlers(cfg, loader_, &metrics_)),
      router_(cfg.routes, handler_names(cfg)),
      engine_(
          std::make_unique<deliver::Engine>(handlers_, cfg_, router_, &metrics_,
                                            deliver::EngineOptions{.scheduling = deliver::Scheduling::inline_calls})) {
  for (const auto& [name, slot] : handlers_)
    if (!slot.handler) {
      spdlog::error("{}", slot.error);
      handler_errors_ = true;
    }
}

void Pipeline::start_async(state::StateStore* outbox, ha::DeliveryProgress* progress) {
  engine_ = std::make_unique<deliver::Engine>(
      handlers_, cfg_, router_, &metrics_,
      deliver::EngineOptions{.scheduling = deliver::Scheduling::threads, .outbox = outbox, .progress = progress});
  engine_->start();
}

bool Pipeline::accepts(const model::ChangeSet& cs) const {
  if (cs.type == model::ChangeType::snapshot) return true;  // [watch] events filters changes; a handler asked for these
  const auto& events = cfg_.watch.events;
  return std::find(events.begin(), events.end(), cs.type) != events.end();
}

bool Pipeline::deliver(const model::ChangeSet& cs) {
  if (!accepts(cs)) return true;
  return engine_->submit(cs);
}

bool Pipeline::deliver_batch(std::vector<model::ChangeSet>&& batch,
                             std::vector<std::shared_ptr<const model::ChangeSet>>* kept) {
  if (std::all_of(batch.begin(), batch.end(), [&](const model::ChangeSet& cs) { return accepts(cs); }))
    return engine_->submit_batch(std::move(batch), kept);
  // Rare (a config that filters change types): the accepted ones copied.
  std::vector<model::ChangeSet> accepted;
  std::copy_if(batch.begin(), batch.end(), std::back_inserter(accepted),
               [&](const model::ChangeSet& cs) { return accepts(cs); });
  bool ok = engine_->submit_batch(std::move(accepted));
  if (kept)
    for (auto& cs : batch) kept->push_back(std::make_shared<const model::ChangeSet>(std::move(cs)));
  return ok;
}

bool Pipeline::flush(std::chrono::milliseconds drain, uint32_t reason) {
  engine_->stop(drain);
  bool ok = true;
  for (auto& [name, slot] : handlers_)
    if (slot.handler) {
      auto out = slot.handler->flush(reason);
      if (out.status != KUBETRAIL_OK) {
        spdlog::error("handler \"{}\": flush failed: {}", name, out.message);
        ok = false;
      }
    }
  return ok;
}

}  // namespace kubetrail::cli
