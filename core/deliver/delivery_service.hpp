// Delivery for `kubetrail run`: one bounded queue and one delivery thread per
// handler, so a slow or failing handler never delays the others or the
// informers. A route's chain is followed in order per change set: a handler's
// OK hands the change set to the next handler of the chain, STOP ends it.
// RETRY is retried with backoff (the plugin's delay wins); after the last
// attempt, or on FAIL, the change set becomes a dead letter with the reason.
//
// With a state store, every change set is written to the durable outbox
// before any handler sees it and marked per handler when delivered: on
// start-up undelivered entries are delivered first, and no handler receives
// the same change set id twice, restarts included. A full queue spills to
// the outbox (the backlog is a metric) instead of dropping anything. Without
// a state store, a full queue makes submit() wait.
//
// submit() is called from one thread; everything else is internal.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "deliver/deliver.hpp"
#include "ha/handover.hpp"
#include "state/state_store.hpp"

namespace kubetrail::deliver {

class DeliveryService {
 public:
  DeliveryService(std::map<std::string, HandlerSlot>& handlers, const config::Config& cfg, const route::Router& router,
                  Metrics* metrics, state::StateStore* outbox, ha::DeliveryProgress* progress = nullptr);
  ~DeliveryService();
  DeliveryService(const DeliveryService&) = delete;
  DeliveryService& operator=(const DeliveryService&) = delete;

  // Starts the delivery threads; undelivered outbox entries go first.
  void start();
  // Routes a change set and queues it for the first handler of each chain.
  void submit(const model::ChangeSet& cs);
  // Stops accepting, delivers what is queued until `deadline`, then stops
  // the threads. What is left stays in the outbox.
  void stop(std::chrono::milliseconds deadline);

  struct Stats {
    std::atomic<uint64_t> delivered{0}, dead{0}, unrouted{0}, skipped_duplicates{0};
  };
  const Stats& stats() const noexcept { return stats_; }
  size_t queued() const;
  // "" when every handler queue moves, else which one has held change sets
  // without delivering any for longer than `limit` (for /healthz).
  std::string stuck(std::chrono::steady_clock::duration limit) const;

 private:
  struct Entry;  // a change set and its ABI view, shared by the tickets of its chains
  struct Ticket {
    std::shared_ptr<const Entry> entry;
    std::string route;
    int position = 0;
    int64_t seq = 0;  // outbox row, 0 without outbox
  };
  struct Worker;

  // false when nothing was queued (end of the chain, or this handler
  // already had the id): the chain ends here.
  bool enqueue(std::shared_ptr<const Entry> entry, const std::string& route, int position);
  void run_worker(Worker& w);
  void deliver_batch(Worker& w, std::vector<Ticket>& batch);
  void finish(Worker& w, const Ticket& t, int32_t status, const std::string& reason);
  void refill_from_outbox(Worker& w);
  void record_backlog();

  std::map<std::string, HandlerSlot>& handlers_;
  const config::Config& cfg_;
  const route::Router& router_;
  Metrics* metrics_;
  state::StateStore* outbox_;
  ha::DeliveryProgress* progress_;  // leader election: what has been delivered through (may be null)
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::chrono::steady_clock::time_point deadline_{};  // written before stopping_ is set, read after
  Stats stats_;
  int32_t m_unrouted_ = -1, m_backlog_ = -1;
};

}  // namespace kubetrail::deliver
