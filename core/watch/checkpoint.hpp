// The watch stage's durable progress for one informer: which cached objects
// moved since the last checkpoint, which change sets wait to be durable, and
// the commit that writes both in one save of the state store (one frame of
// its log, or one transaction for a list page) before it hands the change
// sets on. The invariant (docs/ARCHITECTURE.md): a checkpoint never covers a
// change whose change set is not durable, and no change set reaches delivery
// that the checkpoint does not cover. Without a state store nothing is kept
// and the commit only hands on what the bytes at hand produced, together:
// one hand-off (one lock, one wake-up of delivery) per read, not per event.
//
// Kept apart from the reflector (Informer: when to list, watch, back off)
// and from the Tracker (the cache and the per-event step, which replay
// shares and which knows nothing of state).
//
// Not thread-safe: owned by one informer.
#pragma once

#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "model/change_set.hpp"
#include "model/object_store.hpp"
#include "state/state_store.hpp"

namespace kubetrail::watch {

class Checkpoint {
 public:
  // Receives the change sets of one commit, in order (never empty).
  using Sink = std::function<void(std::vector<model::ChangeSet>&&)>;
  using TimePoint = std::chrono::steady_clock::time_point;
  // `key`: the resource (and namespace) in the store; `name`: for the log.
  Checkpoint(state::StateStore* store, std::string key, std::string name, Sink sink);

  state::StateStore* store() const noexcept { return store_; }
  const std::string& key() const noexcept { return key_; }

  // A change set found: handed on by the next commit.
  void emit(model::ChangeSet&& cs);
  // The cached object under `key` changed, appeared or left.
  void touched(std::string key);
  // After a list: the next commit also drops the rows the store holds that
  // the cache no longer has (it asks the store which those are: a set of
  // every key checkpointed, kept here, cost a lookup per saved object per
  // event and ~50 bytes per object, for this one use after a list).
  void prune_at_next_commit() noexcept { prune_ = true; }

  // Writes the objects that moved (as `cache` has them now) and the change
  // sets waiting, with resourceVersion `rv` when forced or once a second,
  // then hands the change sets on. Without change sets waiting it does
  // nothing unless forced or a second has passed. False when the store
  // failed: nothing was written, the change sets wait (in memory) and the
  // objects stay marked until a commit succeeds.
  bool commit(bool force, TimePoint now, const std::string& rv, const model::ObjectStore& cache);
  size_t waiting() const noexcept { return pending_.size(); }

 private:
  void hand_on();  // pending_ to the sink, as one batch
  state::StateStore* store_;
  std::string key_, name_;
  Sink sink_;
  std::set<std::string> dirty_;            // keys changed since the last checkpoint
  bool prune_ = false;                     // after a list: drop checkpointed keys no longer cached
  std::vector<model::ChangeSet> pending_;  // found, not yet durable (or, without a store, not yet handed on)
  TimePoint last_{};                       // the last commit that wrote the resourceVersion
  // commit()'s arguments to the store, kept for their capacity.
  std::vector<std::pair<std::string, const model::StoredObject*>> upserts_;
  std::vector<std::string> deletes_;
  std::vector<state::StateStore::JournalEntry> journal_;
};

}  // namespace kubetrail::watch
