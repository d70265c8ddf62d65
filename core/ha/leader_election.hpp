// Leader election over a coordination.k8s.io/v1 Lease, the way client-go's
// leaderelection package does it, so that several kubetrail replicas can run
// and exactly one delivers:
//
//  * every retry period each candidate GETs the Lease; a holder renews it
//    (PUT with the Lease's resourceVersion, so a concurrent writer gets 409
//    and loses); a candidate takes it when it has no holder or its record has
//    not changed for a whole lease duration *as timed by the candidate's own
//    clock* (client-go's observedTime: clocks of different nodes never get
//    compared);
//  * a leader that has not renewed for the renew deadline has lost the lease
//    (another replica may hold it by now) and must stop delivering at once;
//  * a leader that stops releases the lease (no holder, duration 1 s), so a
//    follower takes over without waiting out the lease.
//
// kubetrail adds one thing: the leader publishes its delivery progress in an
// annotation of the Lease (kAnnotationProgress, a JSON object of stream key
// -> resourceVersion delivered through), and followers read it. A follower
// keeps what its own warm informers produced that the leader has not yet
// confirmed, and delivers exactly that when it takes over (see
// ha/handover.hpp). The same way it publishes when each handler's last
// inventory snapshot was taken (kAnnotationSnapshots, handler -> unix
// seconds), so that a new leader does not take again at once the snapshot
// the last one took (cli/inventory.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "kube/client.hpp"

namespace kubetrail::ha {

inline constexpr const char* kAnnotationProgress = "kubetrail.io/delivered-through";
inline constexpr const char* kAnnotationSnapshots = "kubetrail.io/snapshots-taken";

struct LeaseSettings {
  std::string lease_namespace = "kubetrail";
  std::string name = "kubetrail";
  std::string identity;                             // unique per replica; see default_identity()
  std::chrono::milliseconds lease_duration{15000};  // client-go's defaults
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// $POD_NAME, else the host name, then "_" and random hex: two replicas on
// one host (or one restarted quickly) never share an identity.
std::string default_identity();

class LeaderElector {
 public:
  using Progress = std::map<std::string, std::string>;
  using SnapshotTimes = std::map<std::string, int64_t>;  // handler -> unix seconds

  LeaderElector(kube::Client& client, LeaseSettings settings);

  // The election loop (run it on its own thread): one step every retry
  // period until `stop` or until the lease is lost. A leader keeps renewing
  // while it drains its queues; call release() once it has stopped.
  void run(const std::atomic<bool>& stop);

  // One acquire-or-renew step; true when this replica holds the lease after
  // it. Exposed for tests; run() calls it.
  bool step();
  // Gives the lease up (no holder), publishing the final progress.
  void release();

  // Holds the lease and renewed it within the renew deadline.
  bool leading() const;
  // Was leading and could not renew within the renew deadline: another
  // replica may be delivering now. Sticky.
  bool lost() const { return lost_.load(); }
  std::string holder() const;
  const std::string& identity() const noexcept { return s_.identity; }

  // What the leader delivers through; written into the Lease on each renew.
  void publish(Progress progress);
  // The progress found in the Lease at the last step (the leader's, while
  // following); and a counter that moves whenever it changed.
  Progress observed_progress() const;
  uint64_t observed_generation() const { return observed_gen_.load(); }

  // The leader took handler's inventory snapshot at `at` (unix seconds);
  // written into the Lease on each renew. An earlier time is ignored,
  // unless `replace`: the time kept was refused as no snapshot taken (one
  // far ahead of the clock, see cli::InventorySchedule), and kept it would
  // be published on, to every replica that leads next.
  void snapshot_taken(const std::string& handler, int64_t at, bool replace = false);
  // When each handler's last snapshot was taken as the Lease said at the
  // last step: by whichever replica led then.
  SnapshotTimes observed_snapshots() const;
  // The same for one handler; 0 when the Lease names none.
  int64_t observed_snapshot(const std::string& handler) const;

 private:
  std::string leases_path() const;
  bool write(const std::string& method, const std::string& path, bool leading_next);
  std::string lease_json(const std::string& holder, int64_t duration_s, const std::string& acquire_time,
                         int32_t transitions, const std::string& resource_version) const;

  kube::Client& client_;
  LeaseSettings s_;
  // Two locks, so that no reader waits for an API call: step_mu_ serializes
  // step() and release() (which talk to the API server) and guards what only
  // they use; mu_ guards what other threads read (leading(), holder(),
  // observed_progress()) or write (publish()), and is held only briefly.
  // Only step() and release() write holding_, renewed_ and observed_holder_
  // (under both locks), so they read them under step_mu_ alone.
  std::mutex step_mu_;
  mutable std::mutex mu_;
  // The last record observed, and when (by our clock) it last changed.
  std::string observed_raw_;                                // step_mu_
  std::string observed_acquire_time_, observed_rv_;         // step_mu_
  int32_t observed_transitions_ = 0;                        // step_mu_
  std::chrono::steady_clock::time_point observed_time_{};   // step_mu_
  std::string observed_holder_;                             // mu_ (written under both)
  Progress observed_progress_, published_;                  // mu_
  SnapshotTimes observed_snapshots_, published_snapshots_;  // mu_
  std::chrono::steady_clock::time_point renewed_{};         // mu_ (written under both): last acquire or renew
  bool holding_ = false;                                    // mu_ (written under both)
  std::atomic<bool> lost_{false};
  std::atomic<uint64_t> observed_gen_{0};
};

}  // namespace kubetrail::ha
