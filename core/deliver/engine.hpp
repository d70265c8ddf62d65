// The delivery engine, one for every subcommand: it follows each change
// set down the handler chains of the routes it matches. Per chain, in order:
// a handler's OK hands the change set to the next handler, STOP ends the
// chain (delivered), RETRY is retried with backoff (the plugin's delay wins),
// and after the last attempt, or on FAIL, the change set becomes a dead
// letter with the reason and the chain ends there - the handlers after it do
// not get it. A plugin without KUBETRAIL_CAP_BATCH gets one change set per
// call; one with it up to its handler's batch_max, each item's own result
// honoured.
//
// Two ways to schedule the same state machine:
//  - inline (replay, tests): submit() delivers every chain before it
//    returns, in config order, a retry's wait through an injected sleep;
//    deterministic.
//  - threads (run): one bounded queue and one delivery thread per handler,
//    so a slow or failing handler never delays the others or the watches.
//
// With a state store (the outbox), every change set is written to the
// outbox before its handler sees it and marked when delivered: on start-up
// undelivered entries are delivered first, and no handler receives the same
// change set id twice, restarts included. A full queue spills to the outbox
// (the backlog is a metric) instead of dropping anything. Without a state
// store, a full queue makes submit() wait.
//
// submit() is called from one thread; everything else is internal.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
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

enum class Scheduling { inline_calls, threads };

struct EngineOptions {
  Scheduling scheduling = Scheduling::threads;
  state::StateStore* outbox = nullptr;       // the durable outbox (run with a state store)
  ha::DeliveryProgress* progress = nullptr;  // leader election: what has been delivered through
  SleepFn sleep = nullptr;                   // inline: how a retry waits (default: it sleeps)
};

class Engine {
 public:
  Engine(std::map<std::string, HandlerSlot>& handlers, const config::Config& cfg, const route::Router& router,
         Metrics* metrics, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Threads: starts the delivery threads; undelivered outbox entries go
  // first. Inline: nothing to start.
  void start();
  // Routes a change set and hands it to the first handler of each chain.
  // Inline: delivers every chain before returning, and says whether none
  // ended in a dead letter. Threads: queues, and returns true.
  bool submit(const model::ChangeSet& cs);
  // submit() for a batch, in order, each change set moved into what its
  // chains share (its objects are not copied). Threads with an outbox: the
  // outbox rows of the whole batch are written in one transaction before
  // any of it is queued, so a failure to write them (a kubetrail::Error)
  // leaves nothing of the batch queued. On a throw `batch` is as it was
  // given - it can be submitted again whole. `kept`, if given, receives
  // every change set of the batch in order, shared with the chains (the
  // history keeps them without a copy).
  bool submit_batch(std::vector<model::ChangeSet>&& batch,
                    std::vector<std::shared_ptr<const model::ChangeSet>>* kept = nullptr);
  // Stops accepting, delivers what is queued until `deadline`, then stops
  // the threads. What is left stays in the outbox.
  void stop(std::chrono::milliseconds deadline);

  // The outbox holds rows for `handler` that its worker has not seen (a dead
  // letter handed back): it reloads them within its next idle wait.
  void outbox_grew(const std::string& handler);

  struct Stats {
    // delivered and dead count handler deliveries (a chain of two delivers twice)
    std::atomic<uint64_t> submitted{0}, delivered{0}, dead{0}, unrouted{0}, skipped_duplicates{0};
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
    const route::Route* route = nullptr;
    int position = 0;
    int64_t seq = 0;  // outbox row, 0 without outbox
  };
  struct Worker;

  // false when nothing was queued (end of the chain, or this handler
  // already had the id): the chain ends here.
  bool enqueue(std::shared_ptr<const Entry> entry, const route::Route* route, int position);
  // Hands a ticket (its outbox row written) to its handler's queue.
  void push(Worker& w, Ticket t);
  void drain_inline();
  // Waits before a retry; false when shutting down instead (threads).
  bool wait_to_retry(std::chrono::milliseconds delay);
  void run_worker(Worker& w);
  void deliver_batch(Worker& w, std::vector<Ticket>& batch);
  // What a handler call settled: batch[index] ended with `status`.
  struct Settled {
    size_t index;
    int32_t status;
    std::string reason;
  };
  // Marks them in the outbox and moves each chain on - one transaction for
  // all of them. Should the store fail (a kubetrail::Error) nothing of it
  // happened.
  void finish(Worker& w, const std::vector<Ticket>& batch, const std::vector<Settled>& settled);
  // The worker of a route's handler at `position`, or null past the chain's end.
  Worker* worker_at(const route::Route* route, int position) const;
  void refill_from_outbox(Worker& w);
  void record_backlog();
  void count_unrouted(const model::ChangeSet& cs);
  bool submit_entry(const std::shared_ptr<const Entry>& entry, const std::vector<const route::Route*>& routes);
  void submit_with_outbox(const std::vector<model::ChangeSet>& batch,
                          const std::vector<std::shared_ptr<Entry>>& entries,
                          const std::vector<std::vector<const route::Route*>>& matched);

  std::map<std::string, HandlerSlot>& handlers_;
  const config::Config& cfg_;
  const route::Router& router_;
  Metrics* metrics_;
  const Scheduling scheduling_;
  state::StateStore* outbox_;
  ha::DeliveryProgress* progress_;  // leader election: what has been delivered through (may be null)
  SleepFn sleep_;
  std::deque<std::pair<Worker*, Ticket>> inline_;  // inline: deliveries due, in order
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::chrono::steady_clock::time_point deadline_{};  // written before stopping_ is set, read after
  Stats stats_;
  int32_t m_unrouted_ = -1, m_backlog_ = -1;
};

}  // namespace kubetrail::deliver
