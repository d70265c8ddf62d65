#include "cli/inventory.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/thread_name.hpp"
#include "diff/diff.hpp"

namespace kubetrail::cli {

std::vector<TakenSnapshot> take_snapshots(kube::Api& api, const config::Config& cfg,
                                          const std::map<std::string, model::ResourceType>& resources,
                                          const route::Router& router, const std::vector<std::string>& handlers,
                                          const std::function<void(std::vector<model::ChangeSet>&&)>& sink,
                                          const std::atomic<bool>& stop, size_t batch_size) {
  const std::string started_at = now_rfc3339();
  diff::ChangeDetector detector(cfg.cluster.name, cfg.diff);
  // Each resource once, in every scope the informers watch, if a handler's
  // routes could take any of it.
  std::vector<std::unique_ptr<watch::ResourceSnapshot>> listed;
  for (const auto& entry : resources) {
    const model::ResourceType& type = entry.second;
    if (std::none_of(handlers.begin(), handlers.end(),
                     [&](const std::string& h) { return h.empty() || router.may_take(h, type); }))
      continue;
    std::vector<std::string> scopes{""};
    if (type.namespaced && !cfg.watch.namespaces.empty()) scopes = cfg.watch.namespaces;
    for (const auto& ns : scopes)
      listed.push_back(std::make_unique<watch::ResourceSnapshot>(
          api, detector, type,
          watch::ListScope{ns, cfg.watch.exclude_namespaces, cfg.watch.label_selector, cfg.watch.field_selector},
          stop));
  }
  std::vector<TakenSnapshot> out;
  for (const auto& handler : handlers) {
    TakenSnapshot taken{handler, handler.empty() ? started_at : handler + "/" + started_at, 0};
    // First which objects (a receiver is told how many to expect), then
    // each, made again from the packed store: never all at once in memory.
    // An object's change set is made for the count only when a route's
    // `where` must read it; resources and namespaces are known without.
    std::vector<std::pair<size_t, size_t>> chosen;  // (resource, key)
    for (size_t r = 0; r < listed.size(); ++r)
      for (size_t k = 0; k < listed[r]->keys().size(); ++k) {
        const std::string& key = listed[r]->keys()[k];
        // NAMESPACE/NAME ("/NAME" cluster-scoped): the namespace as the item's change set would have it.
        const std::string_view ns = std::string_view(key).substr(0, key.find('/'));
        std::optional<bool> taken = handler.empty() ? true : router.takes_at(handler, listed[r]->type(), ns);
        if (!taken) taken = router.takes(handler, listed[r]->item(key));
        if (*taken) chosen.emplace_back(r, k);
      }
    taken.total = chosen.size();
    std::vector<model::ChangeSet> batch;
    uint64_t index = 0;
    for (const auto& [r, k] : chosen) {
      if (stop.load()) throw Error("snapshot " + taken.id + " stopped");
      model::ChangeSet cs = listed[r]->item(listed[r]->keys()[k]);
      cs.snapshot = model::SnapshotInfo{taken.id, handler, ++index, taken.total};
      cs.id = model::snapshot_item_id(cs.cluster, cs.uid, cs.object_namespace, cs.name, taken.id);
      cs.summary = model::summarize(cs);
      batch.push_back(std::move(cs));
      if (batch.size() >= batch_size) {
        sink(std::move(batch));
        batch.clear();
      }
    }
    if (!batch.empty()) sink(std::move(batch));
    out.push_back(std::move(taken));
  }
  return out;
}

InventorySchedule::InventorySchedule(Sources sources) : src_(std::move(sources)) {
  if (src_.state) ledger_.emplace(*src_.state);
  thread_ = std::thread([this] {
    name_this_thread("kt-inventory");
    loop();
  });
}

InventorySchedule::~InventorySchedule() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<InventorySchedule::Batch> InventorySchedule::next() {
  std::lock_guard lock(mu_);
  if (queue_.empty()) return std::nullopt;
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();  // room for the taker
  return b;
}

bool InventorySchedule::pending() {
  std::lock_guard lock(mu_);
  return !queue_.empty();
}

bool InventorySchedule::wait(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [&] { return stop_.load(); });
}

int64_t InventorySchedule::last_taken(const std::string& handler, int64_t now, int64_t every) {
  int64_t by_leader = src_.taken_by_leader ? src_.taken_by_leader(handler) : 0;
  // A time more than a period ahead of this clock is no snapshot taken: a
  // replica's clock that far off, or a hand on the Lease. Honoured, it
  // would hold this handler's snapshots off until then; left out, the
  // worst is one snapshot sent again. (Within a period: a clock a little
  // ahead, counted.)
  if (by_leader > now + every) {
    std::lock_guard lock(mu_);
    if (ignored_[handler] != by_leader)
      spdlog::warn(
          "inventory: the Lease says handler \"{}\" took its last snapshot at {}, {} s ahead of this clock and more "
          "than its inventory_every: left out",
          handler, by_leader, by_leader - now);
    ignored_[handler] = by_leader;
    by_leader = 0;
  } else if (by_leader) {
    std::lock_guard lock(mu_);
    ignored_.erase(handler);  // the Lease holds a real time again
  }
  if (ledger_) {
    try {
      return std::max(ledger_->last_taken(handler), by_leader);
    } catch (const std::exception& e) {
      spdlog::warn("inventory: when handler \"{}\" last took a snapshot is unreadable{}: {}", handler,
                   by_leader ? "; going by the Lease" : ", taking one", e.what());
      return by_leader;
    }
  }
  std::lock_guard lock(mu_);
  auto it = last_.find(handler);
  return std::max(it == last_.end() ? 0 : it->second, by_leader);
}

void InventorySchedule::gauge(const char* name, const char* help, const std::string& handler, double value) {
  if (src_.metrics)
    src_.metrics->record(src_.metrics->define(MetricKind::gauge, name, help, {{"handler", handler}}), value);
}

void InventorySchedule::taken(const std::string& handler, int64_t at) {
  gauge("kubetrail_inventory_last_snapshot_timestamp_seconds",
        "when the handler's last inventory snapshot was taken (unix seconds; routed whole)", handler,
        static_cast<double>(at));
  if (src_.publish_taken) {
    bool replace = false;
    {
      std::lock_guard lock(mu_);
      replace = ignored_.count(handler) > 0;
    }
    src_.publish_taken(handler, at, replace);
  }
  if (ledger_) {
    try {
      ledger_->taken(handler, at);
    } catch (const Error& e) {
      spdlog::error("inventory: {} (handler \"{}\" takes its next snapshot early)", e.what(), handler);
    }
    return;
  }
  std::lock_guard lock(mu_);
  last_[handler] = at;
}

void InventorySchedule::loop() {
  using namespace std::chrono;
  // The last snapshot's batches are still being routed: the next waits.
  auto in_flight = std::make_shared<std::atomic<int>>(0);
  while (wait(seconds(1))) {
    if (in_flight->load() > 0 || !src_.ready()) continue;
    auto cfg = src_.config();
    if (!cfg) continue;
    const int64_t now = duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
    std::vector<std::string> due;
    for (const auto& h : cfg->handlers) {
      if (h.inventory_every.count() == 0) continue;
      const int64_t last = last_taken(h.name, now, h.inventory_every.count());
      if (last > 0)  // after a restart too: for an alert on snapshots that stopped
        gauge("kubetrail_inventory_last_snapshot_timestamp_seconds",
              "when the handler's last inventory snapshot was taken (unix seconds; routed whole)", h.name,
              static_cast<double>(last));
      if (now >= last + h.inventory_every.count()) due.push_back(h.name);
    }
    if (due.empty()) continue;
    route::Router router(cfg->routes);  // to choose the objects (takes()); delivery routes in the pipeline
    // The last batch of a handler's snapshot (its last item's index is the
    // total) records the snapshot taken, once the main loop has routed it.
    auto hand_on = [&](std::vector<model::ChangeSet>&& items) {
      if (!src_.ready()) throw Error("this replica no longer delivers");
      const model::SnapshotInfo& last = *items.back().snapshot;
      std::function<void()> recorded;
      if (last.index == last.total) {
        // Announced before it can be routed: a crash after the routing and
        // before taken() is then found out at the restart (SnapshotLedger).
        if (ledger_) ledger_->last_batch(last.handler, now, items.back().id);
        recorded = [this, h = last.handler, id = last.id, now] {
          taken(h, now);
          spdlog::info("inventory: snapshot {} routed to handler \"{}\"", id, h);
        };
      }
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_.load() || queue_.size() < kQueuedBatches; });
      if (stop_.load()) throw Error("stopping");
      in_flight->fetch_add(1);
      queue_.push_back(Batch{std::move(items), [in_flight, recorded] {
                               if (recorded) recorded();
                               in_flight->fetch_sub(1);
                             }});
    };
    try {
      auto snapshots = take_snapshots(src_.api, *cfg, src_.resources(), router, due, hand_on, stop_);
      for (const auto& t : snapshots) {
        spdlog::info("inventory: snapshot {} of {} object(s) for handler \"{}\"", t.id, t.total, t.handler);
        gauge("kubetrail_inventory_snapshot_objects", "objects in the handler's last inventory snapshot", t.handler,
              static_cast<double>(t.total));
        if (t.total == 0) taken(t.handler, now);  // nothing to route
      }
    } catch (const std::exception& e) {
      if (stop_.load()) return;
      // What was handed on is routed; the snapshot is not recorded taken,
      // so a new one (with a new id) follows after a pause.
      spdlog::warn("inventory: snapshot for {} handler(s) failed, trying again in 60 s: {}", due.size(), e.what());
      if (!wait(seconds(60))) return;
    }
  }
}

}  // namespace kubetrail::cli
