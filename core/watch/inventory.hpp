// Inventory mode's source: every object of one resource in one scope, listed
// fresh from the server the way an informer lists (pages of `limit`,
// `continue`, the same scope: watch/request.hpp) and kept as the cache keeps
// objects - pruned, redacted, packed (model::ObjectStore) - so that the
// objects can be counted, then handed on one at a time as Snapshot change
// sets (diff::ChangeDetector::snapshot).
//
// Why list rather than read the informers' caches: each cache belongs to
// its informer's thread, and a receiver reconciling against a snapshot (a
// CMDB) wants the server's truth at one moment, not a cache that may have
// skipped an object that could not be handled. One list every few hours
// per resource is little next to what the watches cost the server.
//
// Untrusted input: a page that is not JSON, or a list that fails, is an
// error naming the resource; an object that cannot be handled is counted
// and skipped, as informers do.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "diff/diff.hpp"
#include "kube/api.hpp"
#include "model/object_store.hpp"
#include "model/resource_type.hpp"
#include "state/state_store.hpp"
#include "watch/request.hpp"

namespace kubetrail::watch {

class ResourceSnapshot {
 public:
  // Lists `type` in `scope`, its objects pruned by `detector` (which holds
  // the [diff] rules and redaction key of the informers). A `continue`
  // token that expires mid-list (410) starts the list over, up to 3 times.
  // Throws kubetrail::Error naming the resource when the list fails or
  // `stop` is set.
  ResourceSnapshot(kube::Api& api, diff::ChangeDetector& detector, model::ResourceType type, ListScope scope,
                   const std::atomic<bool>& stop, uint32_t page_size = 500);

  const model::ResourceType& type() const noexcept { return type_; }
  const std::string& listed_at() const noexcept { return listed_at_; }
  // Store keys (NAMESPACE/NAME) of the objects listed, sorted.
  const std::vector<std::string>& keys() const noexcept { return keys_; }
  // The object under `key` as a Snapshot change set (no id or snapshot
  // info yet). Valid keys only.
  model::ChangeSet item(const std::string& key);
  // Objects that could not be handled (logged and skipped).
  uint64_t skipped() const noexcept { return skipped_; }

 private:
  diff::ChangeDetector& detector_;
  model::ResourceType type_;
  std::string name_;  // for messages: "pods in shop"
  model::ObjectStore store_;
  std::vector<std::string> keys_;
  std::string listed_at_;
  uint64_t skipped_ = 0;
};

// When each handler's last snapshot was taken, kept in a state store. A
// snapshot counts as taken once its last batch is routed, i.e. its outbox
// rows are written; the time is a setting of its own, a second write. So
// that a kill -9 between the two neither repeats a whole snapshot under a
// new id (the receiver got it already) nor skips one cut short, the last
// batch is announced first (its last item's id), and a restart that finds
// the announcement asks the outbox whether that item was routed.
class SnapshotLedger {
 public:
  explicit SnapshotLedger(state::StateStore& store) : store_(store) {}
  // Before the snapshot's last batch is handed on to be routed.
  void last_batch(const std::string& handler, int64_t at, const std::string& last_item_id);
  // The last batch is routed (or the snapshot was empty).
  void taken(const std::string& handler, int64_t at);
  // Seconds since the epoch of the handler's last snapshot taken; 0: none.
  // An announced last batch the outbox holds counts as taken (and is
  // recorded so); one it does not hold is forgotten.
  int64_t last_taken(const std::string& handler);
  // last_taken() for every handler with an announced last batch. Called
  // before the outbox is compacted: compaction may forget the delivered
  // row that proves the batch routed (a long stop ages it past [state]
  // retention), and the snapshot would then be taken, and sent, again.
  void settle_announced();

 private:
  state::StateStore& store_;
};

}  // namespace kubetrail::watch
