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
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything kept
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      std::vector<const model::ChangeSet*> batch;
      batch.reserve(item.batch.size());
      for (const auto& cs : item.batch) batch.push_back(cs.get());
      history_.append(batch);
    } catch (const Error& e) {  // the history is a record, not a guarantee: delivery went on without it
      spdlog::error("history: {} change set(s) not kept: {}", item.batch.size(), e.what());
    }
    if (journal_ && !item.journal_ids.empty()) {
      try {
        journal_->journal_done(item.journal_ids);
      } catch (const Error& e) {
        spdlog::error("{} ({} change set(s) will be routed again at the next start; no handler will see one twice)",
                      e.what(), item.journal_ids.size());
      }
    }
    {
      std::lock_guard lock(mu_);
      queued_ -= item.batch.size();
    }
    room_.notify_all();
  }
}

}  // namespace kubetrail::state
