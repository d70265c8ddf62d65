// Keeps change sets in the history (state/history.hpp) on its own thread,
// so that routing - and with it delivery - never waits for SQLite (about
// 11 us a change set: docs/PERFORMANCE.md, "Change history").
//
// Nothing is lost to a crash for that: the change sets' journal entries
// (state_store.hpp) are retired here, after their rows are kept, not when
// their outbox rows are written. A kill -9 in between leaves them in the
// journal; the next start routes them again, the outbox drops what its
// handlers already have (by id), and the history keeps each once (by id
// and time).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/change_set.hpp"
#include "state/history.hpp"
#include "state/state_store.hpp"

namespace kubetrail::state {

class HistoryWriter {
 public:
  // `journal`: where the ids handed with a batch are retired (null: none).
  HistoryWriter(History& history, StateStore* journal);
  // Keeps what is queued, then stops.
  ~HistoryWriter();
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;

  // Queues a batch, and the journal ids to retire once it is kept. Waits
  // while kMaxQueued change sets are queued already (the history thread
  // is behind: routing slows rather than memory growing).
  // The change sets are shared with delivery (Engine::submit_batch's
  // `kept`): nothing is copied.
  void push(std::vector<std::shared_ptr<const model::ChangeSet>> batch, std::vector<std::string> journal_ids);
  void push(std::vector<model::ChangeSet> batch, std::vector<std::string> journal_ids);
  // Returns once everything pushed so far is kept (tests, shutdown).
  void drain();

  static constexpr size_t kMaxQueued = 100000;
  // Change sets kept in one transaction at most (what is queued beyond
  // waits for the next).
  static constexpr size_t kMaxPerTransaction = 4096;

 private:
  void run();
  struct Item {
    std::vector<std::shared_ptr<const model::ChangeSet>> batch;
    std::vector<std::string> journal_ids;
  };
  History& history_;
  StateStore* journal_;
  std::mutex mu_;
  std::condition_variable cv_, room_;
  std::deque<Item> queue_;
  size_t queued_ = 0;  // change sets in queue_ and in the batch being kept
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kubetrail::state
