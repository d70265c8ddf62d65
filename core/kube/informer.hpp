// An informer for one resource (optionally one namespace): list, then
// watch from the list's resourceVersion with bookmarks; on a dropped watch,
// watch again from the last resourceVersion seen; on 410 Gone, list again
// and report the difference between the fresh list and the cache - changes,
// appearances and disappearances while disconnected - each once. Objects
// that exist at start-up are cached, not reported.
//
// run() blocks on the calling thread until `stop` is set; the sink is called
// on that thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "diff/diff.hpp"
#include "kube/client.hpp"
#include "kube/object_store.hpp"
#include "kube/resource.hpp"

namespace kubetrail::state {
class StateStore;
}
namespace kubetrail::server {
class Metrics;
}

namespace kubetrail::kube {

struct InformerOptions {
  ResourceType type;
  std::string namespace_scope;  // "" = all namespaces
  std::vector<std::string> exclude_namespaces;
  std::string label_selector;
  std::string field_selector;
  uint32_t page_size = 500;
  // The server ends each watch after a random time in this range (client-go
  // uses 5-10 minutes), which spreads reconnects out.
  std::chrono::seconds min_watch{300}, max_watch{600};
  // Where to checkpoint (null: nothing survives a restart). With a
  // checkpoint from an earlier run, start-up reports what changed since.
  state::StateStore* state = nullptr;
  server::Metrics* metrics = nullptr;  // null: no metrics
  // Report the objects of the first list as Added (flagged catchUp) when no
  // checkpoint says otherwise: for a resource that began to be served while
  // kubetrail was running, everything in it is new.
  bool report_existing = false;
  // The server's OpenAPI v3 document of this group-version (may be null):
  // the lists its schema keys are diffed by those keys.
  std::shared_ptr<const std::string> openapi_v3;
};

class Informer {
 public:
  using Sink = std::function<void(diff::ChangeSet&&)>;
  Informer(Client& client, InformerOptions options, std::string cluster, diff::DiffOptions diff, Sink sink);

  void run(const std::atomic<bool>& stop);

  bool synced() const noexcept { return synced_.load(); }
  const std::string& name() const noexcept { return name_; }
  struct Stats {
    std::atomic<uint64_t> lists{0}, relists{0}, watches{0}, events{0}, errors{0};
  };
  const Stats& stats() const noexcept { return stats_; }
  // Wall time of the last event or bookmark (for health: a silent watch).
  std::chrono::steady_clock::time_point last_heard() const noexcept { return last_heard_.load(); }

 private:
  enum class WatchEnd { ended, gone, failed, stopped };
  bool list(bool initial, const std::atomic<bool>& stop);
  WatchEnd watch(const std::atomic<bool>& stop);
  std::string path(bool watch) const;
  bool excluded(std::string_view ns) const;
  void backoff(const std::atomic<bool>& stop, uint32_t server_hint_ms);
  // Writes changed objects to the state store; at most once a second unless forced.
  void checkpoint(bool force);
  void touched(std::string_view ns, std::string_view name);

  Client& client_;
  InformerOptions opt_;
  std::string name_;
  diff::ChangeDetector detector_;
  Sink sink_;
  ObjectStore store_;
  std::string rv_;
  std::atomic<bool> synced_{false};
  Stats stats_;
  std::atomic<std::chrono::steady_clock::time_point> last_heard_{std::chrono::steady_clock::now()};
  uint32_t failures_ = 0;
  std::string state_key_;               // the resource (and namespace) in the state store
  std::set<std::string> dirty_;         // keys changed since the last checkpoint
  bool full_checkpoint_ = false;        // after a list: write everything
  std::set<std::string> checkpointed_;  // keys the state store holds
  std::chrono::steady_clock::time_point last_checkpoint_{};
  // Metric ids (-1 without metrics): events by type, and the rest.
  int32_t m_events_[5] = {-1, -1, -1, -1, -1};
  int32_t m_change_sets_[4] = {-1, -1, -1, -1};
  int32_t m_noise_ = -1, m_relists_ = -1, m_watches_ = -1;
  void record(int32_t id, double v = 1);
  void emit(diff::ChangeSet&& cs);
};

}  // namespace kubetrail::kube
