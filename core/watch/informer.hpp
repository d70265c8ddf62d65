// An informer for one resource (optionally one namespace): list, then
// watch from the list's resourceVersion with bookmarks; on a dropped watch,
// watch again from the last resourceVersion seen; on 410 Gone, list again
// and report the difference between the fresh list and the cache - changes,
// appearances and disappearances while disconnected - each once. Objects
// that exist at start-up are cached, not reported. Objects are paired by
// uid: a name deleted and created again is Deleted + Added.
//
// It never hammers the server: every relist and every watch that failed or
// ended at once waits first, exponentially longer (Backoff: client-go's
// 800 ms to 30 s, reset after two healthy minutes), whatever the server
// answers; a Retry-After wins when longer.
//
// With a state store, change sets are handed to the sink only after the
// save that writes them to the journal together with the checkpoint entries
// they cover (watch/checkpoint.hpp; one save per list page, per batch of
// watch events that arrived together): a checkpoint never covers a change
// whose change set is not durable, and no change set reaches delivery that
// the checkpoint does not cover.
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

#include "common/clock.hpp"
#include "common/deep_json.hpp"
#include "diff/diff.hpp"
#include "kube/api.hpp"
#include "kube/watch_stream.hpp"
#include "model/object_store.hpp"
#include "model/resource_type.hpp"
#include "watch/checkpoint.hpp"
#include "watch/request.hpp"
#include "watch/tracker.hpp"

namespace kubetrail::state {
class StateStore;
}
namespace kubetrail {
class Metrics;
}

namespace kubetrail::watch {

struct InformerOptions {
  model::ResourceType type;
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
  Metrics* metrics = nullptr;  // null: no metrics
  // Report the objects of the first list as Added (flagged catchUp) when no
  // checkpoint says otherwise: for a resource that began to be served while
  // kubetrail was running, everything in it is new.
  bool report_existing = false;
  // The server's OpenAPI v3 document of this group-version (may be null):
  // the lists its schema keys are diffed by those keys.
  std::shared_ptr<const std::string> openapi_v3;
  // Waits between attempts (see Backoff), on `clock` (null: the real one).
  BackoffSettings backoff;
  Clock* clock = nullptr;
  // A watch that ends, without an error, sooner than this after it started
  // and with no event counts as a failure (backoff), not as a normal end:
  // a server that closes every watch at once must not be asked again at once.
  std::chrono::milliseconds short_watch{1000};
  // The largest watch event held back while it arrives ([watch] max_event_mb).
  size_t max_event_bytes = kube::JsonFramer::kDefaultMaxFrame;
};

class Informer {
 public:
  using Sink = std::function<void(std::vector<model::ChangeSet>&&)>;  // Checkpoint::Sink
  Informer(kube::Api& client, InformerOptions options, std::string cluster, model::DiffOptions diff, Sink sink);

  void run(const std::atomic<bool>& stop);

  bool synced() const noexcept { return synced_.load(); }
  // Objects received so far by the list in progress (0 when none is): for
  // /readyz and kubetrail_list_objects during a long initial sync.
  uint64_t listing() const noexcept { return listed_.load(); }
  const std::string& name() const noexcept { return name_; }
  struct Stats {
    std::atomic<uint64_t> lists{0}, relists{0}, watches{0}, events{0}, errors{0};
  };
  const Stats& stats() const noexcept { return stats_; }
  // Wall time of the last event or bookmark (for health: a silent watch).
  std::chrono::steady_clock::time_point last_heard() const noexcept { return last_heard_.load(); }

 private:
  enum class WatchEnd { ended, gone, failed, stopped };
  // The keys a relist saw; transparent, so the cache's keys (string_views)
  // are looked up without a copy each.
  using SeenKeys = std::set<std::string, std::less<>>;
  bool list(bool initial, const std::atomic<bool>& stop);
  void list_item(simdjson::dom::element item, const diff::SourceText& source, bool initial, SeenKeys* seen,
                 const std::string& observed_at);
  // An object (event or list item) that cannot be handled: logged with its
  // resource, namespace/name and reason, counted, skipped.
  void failed(const simdjson::dom::element* object, const std::string& where, std::string_view why);
  // An object nested deeper than kubetrail handles (common/deep_json.hpp):
  // failed(), and on a list counted as `seen`, so that what the cache has
  // of it stays.
  void skip_too_deep(simdjson::dom::element object, const std::string& where, SeenKeys* seen);
  // Its DELETED event: reported from the cache's last version of it, if
  // any (else skip_too_deep()), so that no ghost stays behind.
  void deleted_too_deep(simdjson::dom::element object, const std::string& where);
  std::unique_ptr<simdjson::dom::parser> deep_parser_;  // made for the first page or event too deep for the others
  // list() until it succeeds or `stop`, waiting the backoff before each
  // attempt after a failure (and before the first when `wait_first`).
  void list_until_done(bool initial, bool wait_first, const std::atomic<bool>& stop);
  WatchEnd watch(const std::atomic<bool>& stop);
  // [watch] exclude_namespaces travel to the server as a field selector
  // (watch/request.hpp), so an excluded namespace is never listed or sent
  // at all; excluded() still filters what arrives, for a server that
  // ignores the selector.
  std::string path(bool watch) const;
  bool excluded(std::string_view ns) const;
  // Waits the next backoff delay (or the server's Retry-After, if longer).
  void pause(const std::atomic<bool>& stop, uint32_t server_hint_ms, std::string_view why);
  // Checkpoint::commit() with the cache and resourceVersion as they are now.
  void commit(bool force);
  void share_dictionary() noexcept;
  void touched(std::string_view ns, std::string_view name);

  kube::Api& client_;
  Clock& clock_;
  Backoff backoff_;
  uint32_t retry_after_ms_ = 0;        // the last failed list's Retry-After
  uint32_t watch_retry_after_ms_ = 0;  // the last failed watch's
  InformerOptions opt_;
  std::string name_;
  ListScope scope_;  // from opt_: what path() asks for
  diff::ChangeDetector detector_;
  Tracker tracker_;        // the cache and the per-event step (shared with replay)
  Checkpoint checkpoint_;  // what is durable, and the sink change sets go to once they are
  std::string rv_;
  std::atomic<bool> synced_{false};
  std::atomic<uint64_t> listed_{0};  // see listing()
  Stats stats_;
  std::atomic<std::chrono::steady_clock::time_point> last_heard_{std::chrono::steady_clock::now()};
  // Metric ids (-1 without metrics): events by type, and the rest.
  int32_t m_events_[5] = {-1, -1, -1, -1, -1};
  int32_t m_change_sets_[4] = {-1, -1, -1, -1};
  int32_t m_noise_ = -1, m_watches_ = -1, m_failed_ = -1, m_listed_ = -1;
  int32_t m_last_event_ = -1;
  int32_t m_relists_expired_ = -1, m_relists_continue_ = -1;  // kubetrail_relists_total by reason
  void record(int32_t id, double v = 1);
  void heard();                 // an event, a bookmark or a completed list: the watch is alive
  void set_listed(uint64_t n);  // listing() and kubetrail_list_objects
  // How often a long list logs how far it is.
  static constexpr std::chrono::seconds kListProgressEvery{5};
  void emit(model::ChangeSet&& cs);
};

}  // namespace kubetrail::watch
