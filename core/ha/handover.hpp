// What lets a follower take over from a dead leader without losing or
// doubling change sets (leader election, ha/leader_election.hpp).
//
// Both replicas watch the same streams, so both produce the same change sets
// with the same ids. The leader tells how far it got: for every watch
// stream, the resourceVersion of the newest change set that it and every
// change set before it in that stream were delivered (to every handler of
// every route, or dead-lettered) — DeliveryProgress. It publishes that map
// in the Lease. A follower keeps the change sets its informers produce in a
// HandoverBuffer and drops those the leader's published progress covers;
// when it becomes the leader it delivers what is left.
//
// A stream is one resource (cluster-wide watch), or one resource in one
// namespace when [watch] namespaces lists them (one watch per namespace: the
// resourceVersions of different watches interleave, so they are tracked
// apart). Within one stream resourceVersions grow; they are compared as
// integers, which is what etcd-backed API servers write (etcd revisions).
// A resourceVersion that is not an integer is never taken as covered:
// at-least-once, never lost.
//
// The window: what the leader delivered after its last renew (one retry
// period) is delivered again by the new leader. Handlers must tolerate
// redelivery by id (DESIGN.md, Scaling).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/change_set.hpp"

namespace kubetrail::ha {

using StreamKey = std::function<std::string(const model::ChangeSet&)>;
using Progress = std::map<std::string, std::string>;  // stream -> resourceVersion delivered through

// The stream of a change set: "deployments.apps", or "pods/ns1" when
// per_namespace (the resource is watched namespace by namespace).
std::string stream_key(const model::ChangeSet& cs, bool per_namespace);

// true when resourceVersion `rv` is at or before `through` (both integers).
bool covered(const std::string& rv, const std::string& through);

// The leader's side. Thread-safe: begin() from the submitting thread, end()
// from handler delivery threads.
class DeliveryProgress {
 public:
  explicit DeliveryProgress(StreamKey key) : key_(std::move(key)) {}
  // A change set was routed to `chains` chains (0: nothing to deliver).
  void begin(const model::ChangeSet& cs, int chains);
  // One chain of change set `id` ended: delivered to its last handler,
  // stopped by STOP, dead-lettered, or skipped as already delivered.
  // Unknown ids (outbox leftovers of an earlier run) are ignored.
  void end(const std::string& id);
  // Counts everything in flight as done: after a reload the outbox, not
  // this tracker, holds what the old handlers had not delivered.
  void settle_all();
  // Starts from what an earlier leader published (streams not seen here
  // keep their value, so a third replica still finds them).
  void seed(const Progress& progress);
  Progress delivered_through() const;

 private:
  struct Pending {
    std::string id, rv;
    int chains = 0;
  };
  void advance(const std::string& stream);  // with mu_ held

  StreamKey key_;
  mutable std::mutex mu_;
  uint64_t next_ = 0;
  std::map<std::string, std::map<uint64_t, Pending>> streams_;  // in submission order
  std::unordered_map<std::string, std::pair<std::string, uint64_t>> by_id_;
  Progress through_;
};

// The follower's side: change sets the leader has not confirmed yet,
// bounded (the oldest go first, counted and logged: the leader is far
// behind, or not publishing).
class HandoverBuffer {
 public:
  HandoverBuffer(StreamKey key, size_t capacity) : key_(std::move(key)), capacity_(capacity) {}
  void push(model::ChangeSet cs);
  // Takes out what the leader's progress covers (delivered by the leader:
  // a follower keeps it in its history), oldest first.
  std::vector<model::ChangeSet> take_covered(const Progress& leader);
  // Everything left, oldest first; the buffer is empty afterwards.
  std::vector<model::ChangeSet> take();
  size_t size() const noexcept { return items_.size(); }
  uint64_t dropped() const noexcept { return dropped_; }

 private:
  StreamKey key_;
  size_t capacity_;
  std::deque<std::pair<std::string, model::ChangeSet>> items_;  // stream, change set
  uint64_t dropped_ = 0;
};

}  // namespace kubetrail::ha
