#include "deliver/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/error.hpp"
#include "common/log_context.hpp"
#include "common/thread_name.hpp"

namespace kubetrail::deliver {

struct Engine::Entry {
  model::ChangeSet cs;
  std::unique_ptr<plugin::AbiChangeSet> abi;  // points into cs: Entry never moves (held by shared_ptr)
  // Rendered here if the journal did not: the history, which keeps this
  // very change set (submit_batch's `kept`), writes the same JSON.
  explicit Entry(model::ChangeSet c) : cs(std::move(c)) {
    cs.render();
    abi = std::make_unique<plugin::AbiChangeSet>(cs);
  }
};

struct Engine::Worker {
  std::string name;
  HandlerSlot* slot = nullptr;
  const config::HandlerConfig* cfg = nullptr;
  size_t batch_max = 1;  // 1 unless the plugin declares KUBETRAIL_CAP_BATCH
  std::mutex mu;
  std::condition_variable cv;     // items arrived, or stopping
  std::condition_variable space;  // room in the queue (no outbox)
  std::deque<Ticket> queue;
  std::set<int64_t> in_memory;  // outbox rows queued or in flight
  bool spilled = false;         // the outbox holds entries not in the queue
  int64_t last_seq = 0;         // refill after this row
  std::chrono::steady_clock::time_point progress = std::chrono::steady_clock::now();  // last item finished
  bool busy = false;                                                                  // a batch is being delivered
  int32_t m_depth = -1, m_dead = -1;
  HandlerMetrics hm;
};

namespace {
const config::HandlerConfig* handler_config(const config::Config& cfg, const std::string& name) {
  for (const auto& h : cfg.handlers)
    if (h.name == name) return &h;
  return nullptr;
}
}  // namespace

Engine::Engine(std::map<std::string, HandlerSlot>& handlers, const config::Config& cfg, const route::Router& router,
               Metrics* metrics, EngineOptions options)
    : handlers_(handlers),
      cfg_(cfg),
      router_(router),
      metrics_(metrics),
      scheduling_(options.scheduling),
      outbox_(options.outbox),
      progress_(options.progress),
      sleep_(std::move(options.sleep)) {
  if (!sleep_) sleep_ = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  for (auto& [name, slot] : handlers_) {
    auto w = std::make_unique<Worker>();
    w->name = name;
    w->slot = &slot;
    w->cfg = handler_config(cfg_, name);
    // plugin.h: a plugin without KUBETRAIL_CAP_BATCH gets one per call.
    if (w->cfg && slot.handler && slot.handler->batches())
      w->batch_max = w->cfg->batch_max ? w->cfg->batch_max : config::HandlerConfig::kAutoBatchMax;
    if (metrics_) {
      w->m_depth = metrics_->define(MetricKind::gauge, "kubetrail_handler_queue_depth",
                                    "change sets queued for a handler", {{"handler", name}});
      w->m_dead = metrics_->define(MetricKind::counter, "kubetrail_dead_letters_total",
                                   "change sets a handler failed for good", {{"handler", name}});
      w->hm = define_handler_metrics(*metrics_, name);
    }
    workers_.emplace(name, std::move(w));
  }
  if (metrics_) {
    m_unrouted_ = metrics_->define(MetricKind::counter, "kubetrail_change_sets_unrouted_total",
                                   "change sets that matched no route");
    m_backlog_ = metrics_->define(MetricKind::gauge, "kubetrail_outbox_backlog",
                                  "change sets in the outbox not yet delivered to every handler");
  }
}

Engine::~Engine() { stop(std::chrono::milliseconds(0)); }

void Engine::record_backlog() {
  if (metrics_ && outbox_) metrics_->record(m_backlog_, static_cast<double>(outbox_->outbox_backlog()));
}

void Engine::start() {
  if (scheduling_ == Scheduling::inline_calls) return;
  for (auto& [name, w] : workers_) {
    if (outbox_) refill_from_outbox(*w);
    threads_.emplace_back([this, worker = w.get(), handler = name] {
      name_this_thread("kt-d:" + handler);
      run_worker(*worker);
    });
  }
  record_backlog();
}

std::string Engine::stuck(std::chrono::steady_clock::duration limit) const {
  auto now = std::chrono::steady_clock::now();
  for (const auto& [name, w] : workers_) {
    std::lock_guard lock(w->mu);
    if ((!w->queue.empty() || w->busy) && now - w->progress > limit)
      return "handler \"" + name + "\" has delivered nothing for " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - w->progress).count()) + " s with " +
             std::to_string(w->queue.size() + (w->busy ? 1 : 0)) + "+ change set(s) waiting";
  }
  return {};
}

size_t Engine::queued() const {
  size_t n = 0;
  for (const auto& [name, w] : workers_) {
    std::lock_guard lock(w->mu);
    n += w->queue.size();
  }
  return n;
}

// A change set no route matches: counted, and done as far as the progress
// tracker (leader handover) is concerned.
void Engine::count_unrouted(const model::ChangeSet& cs) {
  ++stats_.unrouted;
  if (metrics_) metrics_->record(m_unrouted_, 1);
  if (progress_) progress_->begin(cs, 0);
  spdlog::debug("change set {} matches no route", cs.id);
}

bool Engine::submit(const model::ChangeSet& cs) {
  auto routes = router_.match(cs);
  if (routes.empty()) {
    ++stats_.submitted;
    count_unrouted(cs);
    return true;
  }
  return submit_entry(std::make_shared<const Entry>(cs), routes);
}

bool Engine::submit_entry(const std::shared_ptr<const Entry>& entry, const std::vector<const route::Route*>& routes) {
  ++stats_.submitted;
  const model::ChangeSet& cs = entry->cs;
  uint64_t dead_before = stats_.dead.load();
  // Registered before any chain starts: a fast handler may finish first.
  if (progress_) progress_->begin(cs, static_cast<int>(routes.size()));
  for (const route::Route* r : routes) {
    if (!enqueue(entry, r, 0) && progress_) progress_->end(cs.id);
    drain_inline();  // inline: this route's chain to its end before the next route's, as config order reads
  }
  record_backlog();
  // Threads: the chains have only begun (and other change sets' dead
  // letters may land meanwhile): queued is all there is to say.
  return scheduling_ == Scheduling::threads || stats_.dead.load() == dead_before;
}

bool Engine::submit_batch(std::vector<model::ChangeSet>&& batch,
                          std::vector<std::shared_ptr<const model::ChangeSet>>* kept) {
  // Each routed change set moves into the entry its chains share: its
  // objects (two 8 KB texts for a Pod) are neither copied here nor freed
  // on this thread (perf, 100k pods: the copy and the free of the batch
  // were half the routing thread's time).
  std::vector<std::vector<const route::Route*>> matched;
  std::vector<std::shared_ptr<Entry>> entries(batch.size());
  matched.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    matched.push_back(router_.match(batch[i]));
    if (!matched.back().empty()) entries[i] = std::make_shared<Entry>(std::move(batch[i]));
  }
  // Should anything below throw, the caller gets its batch back as given
  // (it queues it again): moved back where nothing else holds the entry,
  // copied where a chain has it already.
  auto give_back = [&] {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!entries[i]) continue;
      if (entries[i].use_count() == 1)
        batch[i] = std::move(entries[i]->cs);
      else
        batch[i] = entries[i]->cs;
    }
  };
  bool ok = true;
  try {
    if (!outbox_ || scheduling_ != Scheduling::threads) {
      for (size_t i = 0; i < batch.size(); ++i) {
        if (entries[i]) {
          ok = submit_entry(entries[i], matched[i]) && ok;
        } else {
          ++stats_.submitted;
          count_unrouted(batch[i]);
        }
      }
    } else {
      submit_with_outbox(batch, entries, matched);
    }
  } catch (...) {
    give_back();
    throw;
  }
  if (kept) {
    kept->reserve(kept->size() + batch.size());
    for (size_t i = 0; i < batch.size(); ++i)
      kept->push_back(entries[i] ? std::shared_ptr<const model::ChangeSet>(entries[i], &entries[i]->cs)
                                 : std::make_shared<const model::ChangeSet>(std::move(batch[i])));
  }
  return ok;
}

void Engine::submit_with_outbox(const std::vector<model::ChangeSet>& batch,
                                const std::vector<std::shared_ptr<Entry>>& entries,
                                const std::vector<std::vector<const route::Route*>>& matched) {
  // First what the batch owes each chain's first handler, with no side
  // effect: should the outbox not take the rows, nothing happened.
  struct First {
    std::shared_ptr<const Entry> entry;
    const route::Route* route;
    Worker* worker;
    size_t of;  // index in batch
  };
  std::vector<First> firsts;
  std::vector<state::StateStore::OutboxRow> rows;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!entries[i]) continue;
    for (const route::Route* r : matched[i]) {
      auto it = r->chain.empty() ? workers_.end() : workers_.find(r->chain.front());
      if (it == workers_.end()) continue;  // the chain ends before it begins
      firsts.push_back({entries[i], r, it->second.get(), i});
      rows.push_back({entries[i]->cs.id, r->chain.front(), r->name, 0, entries[i]->abi->json()});
    }
  }
  std::vector<int64_t> seqs = outbox_->outbox_add_many(rows);
  size_t f = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    ++stats_.submitted;
    if (!entries[i]) {
      count_unrouted(batch[i]);
      continue;
    }
    const model::ChangeSet& cs = entries[i]->cs;
    if (progress_) progress_->begin(cs, static_cast<int>(matched[i].size()));
    size_t queued = 0;
    for (; f < firsts.size() && firsts[f].of == i; ++f) {
      if (seqs[f] == 0) {  // this handler already has (or had) this id: never twice
        ++stats_.skipped_duplicates;
        continue;
      }
      push(*firsts[f].worker, Ticket{firsts[f].entry, firsts[f].route, 0, seqs[f]});
      ++queued;
    }
    if (progress_)  // chains that ended before they began
      for (size_t k = queued; k < matched[i].size(); ++k) progress_->end(cs.id);
  }
  record_backlog();
}

void Engine::drain_inline() {
  while (!inline_.empty()) {
    auto [w, t] = std::move(inline_.front());
    inline_.pop_front();
    std::vector<Ticket> batch;
    batch.push_back(std::move(t));
    deliver_batch(*w, batch);
  }
}

bool Engine::enqueue(std::shared_ptr<const Entry> entry, const route::Route* route, int position) {
  Worker* at = worker_at(route, position);
  if (!at) return false;
  Worker& w = *at;
  Ticket t{entry, route, position, 0};
  if (outbox_) {
    t.seq = outbox_->outbox_add(entry->cs.id, w.name, route->name, position, entry->abi->json());
    if (t.seq == 0) {
      // This handler already has (or had) this id: never twice. Its chain
      // went on when it was delivered.
      ++stats_.skipped_duplicates;
      return false;
    }
  }
  push(w, std::move(t));
  return true;
}

void Engine::push(Worker& w, Ticket t) {
  if (scheduling_ == Scheduling::inline_calls) {
    inline_.emplace_back(&w, std::move(t));
    return;
  }
  std::unique_lock lock(w.mu);
  size_t cap = w.cfg ? w.cfg->queue_size : 10000;
  if (w.queue.size() >= cap) {
    if (outbox_) {  // spill: it waits in the outbox, the worker reloads it
      w.spilled = true;
      return;
    }
    w.space.wait(lock, [&] { return w.queue.size() < cap || stopping_.load(); });
  }
  if (t.seq) w.in_memory.insert(t.seq);
  // An idle handler's clock starts when work arrives, not at its last delivery.
  if (w.queue.empty() && !w.busy) w.progress = std::chrono::steady_clock::now();
  w.queue.push_back(std::move(t));
  if (metrics_) metrics_->record(w.m_depth, static_cast<double>(w.queue.size()));
  w.cv.notify_one();
}

void Engine::refill_from_outbox(Worker& w) {
  size_t cap = w.cfg ? w.cfg->queue_size : 10000;
  std::vector<state::StateStore::OutboxEntry> rows;
  {
    std::lock_guard lock(w.mu);
    if (w.queue.size() >= cap) return;
    rows = outbox_->outbox_pending(w.name, w.last_seq, cap - w.queue.size());
    w.spilled = rows.size() == cap - w.queue.size();  // maybe more
  }
  for (auto& row : rows) {
    std::shared_ptr<const Entry> entry;
    try {
      entry = std::make_shared<const Entry>(model::ChangeSet::from_json(row.json));
    } catch (const std::exception& e) {
      outbox_->outbox_dead(row.seq, std::string("unreadable outbox entry: ") + e.what());
      continue;
    }
    std::lock_guard lock(w.mu);
    w.last_seq = std::max(w.last_seq, row.seq);
    if (w.in_memory.count(row.seq)) continue;
    w.in_memory.insert(row.seq);
    if (w.queue.empty() && !w.busy) w.progress = std::chrono::steady_clock::now();
    // A route removed by a reload: this handler still gets what it owes,
    // and the chain ends with it.
    w.queue.push_back(Ticket{entry, router_.find(row.route), row.position, row.seq});
  }
  if (!rows.empty()) w.cv.notify_one();
}

void Engine::outbox_grew(const std::string& handler) {
  auto it = workers_.find(handler);
  if (it == workers_.end() || !outbox_) return;
  Worker& w = *it->second;
  std::lock_guard lock(w.mu);
  w.spilled = true;
  w.cv.notify_one();
}

void Engine::run_worker(Worker& w) {
  log_context::Scope handler("handler", w.name);
  for (;;) {
    std::vector<Ticket> batch;
    {
      std::unique_lock lock(w.mu);
      w.cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !w.queue.empty() || stopping_.load(); });
      if (stopping_.load() && (w.queue.empty() || std::chrono::steady_clock::now() > deadline_)) return;
      if (w.queue.empty()) {
        if (w.spilled && outbox_) {
          lock.unlock();
          refill_from_outbox(w);
        }
        continue;
      }
      size_t max = w.batch_max;
      if (w.queue.size() < max && w.cfg && w.cfg->batch_wait_ms > 0)  // wait a little to fill the batch
        w.cv.wait_for(lock, std::chrono::milliseconds(w.cfg->batch_wait_ms), [&] { return w.queue.size() >= max; });
      while (!w.queue.empty() && batch.size() < max) {
        batch.push_back(std::move(w.queue.front()));
        w.queue.pop_front();
      }
      if (metrics_) metrics_->record(w.m_depth, static_cast<double>(w.queue.size()));
      w.space.notify_all();
      w.busy = true;
    }
    try {
      deliver_batch(w, batch);
    } catch (const std::exception& e) {
      // The state store failed under us (disk full, I/O error): what was not
      // marked delivered stays pending in the outbox; this thread goes on
      // after a pause rather than taking the process down.
      spdlog::error("handler \"{}\": delivery failed: {}; retrying in 1 s", w.name, e.what());
      std::unique_lock lock(w.mu);
      for (auto it = batch.rbegin(); it != batch.rend(); ++it)
        if (it->entry && (!it->seq || w.in_memory.count(it->seq))) w.queue.push_front(std::move(*it));
      w.cv.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_.load(); });
    }
    std::lock_guard lock(w.mu);
    w.busy = false;
  }
}

void Engine::deliver_batch(Worker& w, std::vector<Ticket>& batch) {
  if (!w.slot->handler) {
    std::vector<Settled> settled;
    for (size_t i = 0; i < batch.size(); ++i)
      settled.push_back({i, KUBETRAIL_FAIL, "handler not running: " + w.slot->error});
    finish(w, batch, settled);
    return;
  }
  config::RetryPolicy retry = w.slot->retry;
  for (uint32_t attempt = 1; !batch.empty(); ++attempt) {
    std::vector<const plugin::AbiChangeSet*> items;
    for (const auto& t : batch) items.push_back(t.entry->abi.get());
    auto started = std::chrono::steady_clock::now();
    plugin::Outcome out = w.slot->handler->deliver(items);
    if (metrics_) {
      metrics_->record(w.hm.latency, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      metrics_->record(w.hm.for_status(out.status), 1);
    }
    std::vector<Settled> settled;
    std::vector<size_t> retried;
    for (size_t i = 0; i < batch.size(); ++i) {
      int32_t st = i < out.item_status.size() ? out.item_status[i] : out.status;
      if (st == KUBETRAIL_RETRY && attempt < retry.attempts)
        retried.push_back(i);
      else
        settled.push_back({i, st == KUBETRAIL_RETRY ? KUBETRAIL_FAIL : st,
                           st == KUBETRAIL_RETRY
                               ? "gave up after " + std::to_string(attempt) + " attempts: " + out.message
                               : out.message});
    }
    finish(w, batch, settled);  // should the store fail, the whole batch is still here
    std::vector<Ticket> again;
    for (size_t i : retried) again.push_back(std::move(batch[i]));
    batch = std::move(again);
    if (batch.empty()) return;
    auto delay = backoff(retry, attempt, out.retry_after_ms);
    log_context::Scope attempt_field("attempt", attempt);
    spdlog::warn("handler \"{}\": {} change set(s): attempt {}/{} failed, retrying in {} ms: {}", w.name, batch.size(),
                 attempt, retry.attempts, delay.count(), out.message);
    if (!wait_to_retry(delay)) {
      // Shutting down: leave them pending in the outbox for the next start.
      std::lock_guard lock(w.mu);
      for (const auto& t : batch) w.in_memory.erase(t.seq);
      return;
    }
  }
}

bool Engine::wait_to_retry(std::chrono::milliseconds delay) {
  if (scheduling_ == Scheduling::inline_calls) {
    sleep_(delay);
    return true;
  }
  for (auto until = std::chrono::steady_clock::now() + delay; std::chrono::steady_clock::now() < until;) {
    if (stopping_.load() && std::chrono::steady_clock::now() > deadline_) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(50, delay.count())));
  }
  return true;
}

Engine::Worker* Engine::worker_at(const route::Route* route, int position) const {
  if (!route || position >= static_cast<int>(route->chain.size())) return nullptr;  // end of the chain
  auto it = workers_.find(route->chain[static_cast<size_t>(position)]);
  return it == workers_.end() ? nullptr : it->second.get();
}

void Engine::finish(Worker& w, const std::vector<Ticket>& batch, const std::vector<Settled>& settled) {
  if (settled.empty()) return;
  auto delivered = [](int32_t status) { return status == KUBETRAIL_OK || status == KUBETRAIL_STOP; };
  // First what the outbox is told, with no side effect, then all of it in
  // one transaction (not one per row and per next handler): the rows
  // delivered, the rows dead-lettered, and the rows the next handler of
  // each chain that goes on now owes.
  struct Next {
    size_t of;  // index in settled
    Worker* worker;
  };
  std::vector<int64_t> done;
  std::vector<std::pair<int64_t, std::string>> dead;
  std::vector<state::StateStore::OutboxRow> rows;
  std::vector<Next> next;
  bool moved = false;
  for (size_t k = 0; k < settled.size(); ++k) {
    const Ticket& t = batch[settled[k].index];
    const int32_t status = settled[k].status;
    moved = moved || delivered(status) || status == KUBETRAIL_FAIL;
    if (!delivered(status)) {
      if (t.seq) dead.emplace_back(t.seq, settled[k].reason);
      continue;
    }
    if (t.seq) done.push_back(t.seq);
    if (status != KUBETRAIL_OK) continue;  // STOP ends the chain
    if (Worker* nw = worker_at(t.route, t.position + 1)) {
      next.push_back({k, nw});
      rows.push_back({t.entry->cs.id, nw->name, t.route->name, t.position + 1, t.entry->abi->json()});
    }
  }
  std::vector<int64_t> seqs(rows.size(), 0);
  if (outbox_) seqs = outbox_->outbox_settle(done, dead, rows);
  {
    std::lock_guard lock(w.mu);
    if (moved) w.progress = std::chrono::steady_clock::now();  // delivered or given up: the queue moved
    for (const auto& s : settled)
      if (batch[s.index].seq) w.in_memory.erase(batch[s.index].seq);
  }
  size_t n = 0;
  for (size_t k = 0; k < settled.size(); ++k) {
    const Ticket& t = batch[settled[k].index];
    const auto& cs = t.entry->cs;
    if (delivered(settled[k].status)) {
      ++stats_.delivered;
      bool goes_on = false;
      if (n < next.size() && next[n].of == k) {
        if (!outbox_ || seqs[n] != 0) {
          push(*next[n].worker, Ticket{t.entry, t.route, t.position + 1, seqs[n]});
          goes_on = true;
        } else {
          // The next handler already has (or had) this id: never twice. Its
          // chain went on when it was delivered.
          ++stats_.skipped_duplicates;
        }
        ++n;
      }
      if (!goes_on && progress_) progress_->end(cs.id);
    } else {
      if (progress_) progress_->end(cs.id);
      ++stats_.dead;
      if (metrics_) metrics_->record(w.m_dead, 1);
      spdlog::error("handler \"{}\": change set {} ({}) dead-lettered: {}", w.name, cs.id, cs.summary,
                    settled[k].reason);
    }
  }
  record_backlog();  // the gauge is the store's count of pending rows, after every change of it
}

void Engine::stop(std::chrono::milliseconds deadline) {
  if (threads_.empty()) return;
  // Workers deliver what is queued until the deadline, then leave the rest
  // pending in the outbox; a handler call in progress ends by its own timeout.
  deadline_ = std::chrono::steady_clock::now() + deadline;
  stopping_ = true;
  for (auto& [name, w] : workers_) {
    w->cv.notify_all();
    w->space.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace kubetrail::deliver
