// Inventory mode (issue 18): a snapshot of every object a handler's routes
// take, as Snapshot change sets numbered 1..total, handed on in batches -
// every `inventory_every` of the handler in `kubetrail run`, or on demand
// with `kubetrail snapshot`. What Watch-Proxy calls forceReuploadDuration,
// for receivers that keep a copy of the cluster (a CMDB) and reconcile.
//
// One take lists each resource once (watch/inventory.hpp), however many
// handlers are due, then hands each handler its own numbered snapshot: its
// items go down the handler's inventory route alone (route/route.hpp), so
// the other handlers of its chains never see them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.hpp"
#include "config/config.hpp"
#include "kube/api.hpp"
#include "model/change_set.hpp"
#include "model/resource_type.hpp"
#include "route/route.hpp"
#include "state/state_store.hpp"
#include "watch/inventory.hpp"

namespace kubetrail::cli {

struct TakenSnapshot {
  std::string handler;  // "" : every object, for printing
  std::string id;
  uint64_t total = 0;
};

// Lists `resources` as [watch] scopes them and hands the snapshot of each
// of `handlers` to `sink` in batches of up to `batch_size`, in order (by
// resource, then namespace/name). A handler named "" takes every object
// (`kubetrail snapshot` printing); any other takes what router.takes() says.
// Throws kubetrail::Error when a list fails or `stop` is set.
std::vector<TakenSnapshot> take_snapshots(kube::Api& api, const config::Config& cfg,
                                          const std::map<std::string, model::ResourceType>& resources,
                                          const route::Router& router, const std::vector<std::string>& handlers,
                                          const std::function<void(std::vector<model::ChangeSet>&&)>& sink,
                                          const std::atomic<bool>& stop, size_t batch_size = 256);

// `run`'s side: a thread that takes a snapshot for each handler whose
// `inventory_every` has passed since its last one, and hands the batches to
// the main loop (next()), which routes them like change sets - through the
// outbox when there is a state store. A snapshot counts as taken once its
// last batch is routed: the time is kept in the state store, so a restart
// neither skips one that was due nor repeats one that was taken
// (watch::SnapshotLedger); one cut short by a restart is taken again, whole,
// under a new id. With leader election the leader also publishes the time
// in the Lease, and a replica that takes over counts it as its own.
class InventorySchedule {
 public:
  struct Sources {
    kube::Api& api;
    // What is watched now (qualified name -> type).
    std::function<std::map<std::string, model::ResourceType>()> resources;
    // The running config (replaced on SIGHUP).
    std::function<std::shared_ptr<const config::Config>()> config;
    // Whether snapshots may be taken now: this replica delivers and its
    // informers are synced.
    std::function<bool()> ready;
    state::StateStore* state = nullptr;  // when each handler's last snapshot was taken (null: memory only)
    // kubetrail_inventory_last_snapshot_timestamp_seconds and
    // kubetrail_inventory_snapshot_objects, by handler (null: none).
    Metrics* metrics = nullptr;
    // With leader election (null without): when the replica that led
    // before took the handler's last snapshot (the Lease says; 0: never),
    // and where this replica says it took one. A snapshot is due by the
    // later of that time and this replica's own record, so that leadership
    // moving (a rolling update) does not send the inventory again.
    std::function<int64_t(const std::string& handler)> taken_by_leader;
    // `replace`: the Lease's time was left out (a period or more ahead of
    // this clock), so this one replaces it rather than losing to it.
    std::function<void(const std::string& handler, int64_t at, bool replace)> publish_taken;
  };
  explicit InventorySchedule(Sources sources);
  ~InventorySchedule();
  InventorySchedule(const InventorySchedule&) = delete;
  InventorySchedule& operator=(const InventorySchedule&) = delete;

  struct Batch {
    std::vector<model::ChangeSet> items;
    std::function<void()> routed;  // call once the batch is routed (the snapshot's last batch records it taken)
  };
  // The next batch for the main loop to route, or nullopt.
  std::optional<Batch> next();
  bool pending();

 private:
  void loop();
  // Seconds since the epoch of the handler's last snapshot; 0: none.
  // `now` and the handler's period bound what the Lease may say (below).
  int64_t last_taken(const std::string& handler, int64_t now, int64_t every);
  void taken(const std::string& handler, int64_t at);
  bool wait(std::chrono::milliseconds d);  // false when stopping
  void gauge(const char* name, const char* help, const std::string& handler, double value);

  Sources src_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::map<std::string, int64_t> last_;          // without a state store
  std::map<std::string, int64_t> ignored_;       // a Lease time left out, warned about once (under mu_)
  std::optional<watch::SnapshotLedger> ledger_;  // with one
  std::atomic<bool> stop_{false};
  std::thread thread_;
  static constexpr size_t kQueuedBatches = 8;  // a snapshot waits for delivery rather than fill memory
};

}  // namespace kubetrail::cli
