#include "state/history_writer.hpp"

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/thread_name.hpp"

namespace kubetrail::state {

HistoryWriter::HistoryWriter(History& history, StateStore* journal) : history_(history), journal_(journal) {
  thread_ = std::thread([this] {
    name_this_thread("kt-history");
    run();
  });
}

HistoryWriter::~HistoryWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void HistoryWriter::push(std::vector<model::ChangeSet> batch, std::vector<std::string> journal_ids) {
  std::vector<std::shared_ptr<const model::ChangeSet>> shared;
  shared.reserve(batch.size());
  for (auto& cs : batch) shared.push_back(std::make_shared<const model::ChangeSet>(std::move(cs)));
  push(std::move(shared), std::move(journal_ids));
}

void HistoryWriter::push(std::vector<std::shared_ptr<const model::ChangeSet>> batch,
                         std::vector<std::string> journal_ids) {
  if (batch.empty() && journal_ids.empty()) return;
  std::unique_lock lock(mu_);
  room_.wait(lock, [&] { return queued_ < kMaxQueued || stopping_; });
  queued_ += batch.size();
  queue_.push_back({std::move(batch), std::move(journal_ids)});
  cv_.notify_all();
}

void HistoryWriter::drain() {
  std::unique_lock lock(mu_);
  room_.wait(lock, [&] { return queued_ == 0; });
}

void HistoryWriter::run() {
  for (;;) {
    // Everything queued, in one transaction: a commit and its WAL frames
    // cost about what a dozen rows do, and when routing is ahead of this
    // thread the queue holds many small batches.
    std::vector<Item> items;
    size_t change_sets = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything kept
      while (!queue_.empty() && change_sets < kMaxPerTransaction) {
        change_sets += queue_.front().batch.size();
        items.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<const model::ChangeSet*> batch;
    std::vector<std::string> journal_ids;
    batch.reserve(change_sets);
    for (const auto& item : items) {
      for (const auto& cs : item.batch) batch.push_back(cs.get());
      journal_ids.insert(journal_ids.end(), item.journal_ids.begin(), item.journal_ids.end());
    }
    try {
      history_.append(batch);
    } catch (const Error& e) {  // the history is a record, not a guarantee: delivery went on without it
      spdlog::error("history: {} change set(s) not kept: {}", batch.size(), e.what());
    }
    if (journal_ && !journal_ids.empty()) {
      try {
        journal_->journal_done(journal_ids);
      } catch (const Error& e) {
        spdlog::error("{} ({} change set(s) will be routed again at the next start; no handler will see one twice)",
                      e.what(), journal_ids.size());
      }
    }
    items.clear();  // the change sets' last owner, most often: freed before the queue says there is room
    {
      std::lock_guard lock(mu_);
      queued_ -= change_sets;
    }
    room_.notify_all();
  }
}

}  // namespace kubetrail::state
