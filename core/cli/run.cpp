// `kubetrail run`: watch a cluster. Discovery resolves [watch] resources,
// one informer thread per resource (and namespace), change sets flow through
// one queue to the delivery pipeline on the main thread. SIGINT/SIGTERM stop
// the watches, deliver what is queued, flush the handlers and exit 0.
//
// The daemon is a class of parts (Daemon below): the constructor builds them
// in order, run() is the main loop - one call per duty per pass (reload,
// election, routing a batch, re-discovery, gauges) - and stop() takes them
// down. Re-discovery and outbox compaction are Periodic workers of their own.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "cli/inventory.hpp"
#include "cli/pipeline.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/metrics.hpp"
#include "common/periodic.hpp"
#include "common/thread_name.hpp"
#include "ha/handover.hpp"
#include "ha/leader_election.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"
#include "server/http_server.hpp"
#include "state/history.hpp"
#include "state/history_writer.hpp"
#include "state/state_store.hpp"
#include "version.hpp"
#include "watch/informer.hpp"
#include "watch/inventory.hpp"
#include "watch/watches.hpp"

namespace kubetrail::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void on_signal(int) { g_stop.store(true); }
extern "C" void on_hangup(int) { g_reload.store(true); }

// SIGINT/SIGTERM stop (g_stop), SIGHUP reloads: installed before the wait
// for the API server, so that a pod deleted meanwhile exits at once.
void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_hangup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);
}

// What a reload cannot change while informers run: where they look
// (resources, by contrast, are reconciled at once).
bool same_scope(const config::WatchConfig& a, const config::WatchConfig& b) {
  return a.namespaces == b.namespaces && a.exclude_namespaces == b.exclude_namespaces &&
         a.label_selector == b.label_selector && a.field_selector == b.field_selector;
}

// Change sets from the informer threads to the delivery thread.
class ChangeQueue {
 public:
  void push(model::ChangeSet&& cs) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(cs));
    }
    cv_.notify_one();
  }
  // What one informer commit found, in order: one lock and one wake-up.
  void push(std::vector<model::ChangeSet>&& batch) {
    {
      std::lock_guard lock(mu_);
      for (auto& cs : batch) q_.push_back(std::move(cs));
    }
    cv_.notify_one();
  }
  void push_front(model::ChangeSet&& cs) {
    {
      std::lock_guard lock(mu_);
      q_.push_front(std::move(cs));
    }
    cv_.notify_one();
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return q_.size();
  }
  // Waits up to `wait` for one; nullopt on timeout.
  std::optional<model::ChangeSet> pop(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !q_.empty(); })) return std::nullopt;
    auto cs = std::move(q_.front());
    q_.pop_front();
    return cs;
  }
  // Waits up to `wait` for one, then moves up to `max` to `out` in order.
  void pop_into(std::vector<model::ChangeSet>& out, size_t max, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !q_.empty(); })) return;
    while (!q_.empty() && out.size() < max) {
      out.push_back(std::move(q_.front()));
      q_.pop_front();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<model::ChangeSet> q_;
};

// A follower holds at most this many change sets the leader has not
// confirmed; the leader confirms every retry period, so this is minutes of a
// busy cluster's changes.
constexpr size_t kHandoverCapacity = 20000;
// Change sets routed per pass of the main loop (and per journal transaction).
constexpr size_t kRouteBatch = 256;

// `kubetrail run` as parts, each with its lifetime: built in order by the
// constructor (config, connection, discovery, state, delivery, election,
// watches, server, background duties), torn down in reverse, and one main
// loop whose pass calls each duty once. Data flows one way: informer
// threads -> queue -> this thread -> delivery (or, following, the handover
// buffer).
class Daemon {
 public:
  // Throws kubetrail::Error (exit 2) when the config cannot run.
  Daemon(const Args& args, std::unique_ptr<config::Config> cfg, kube::Connection conn, kube::Discovery discovery);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Until SIGINT/SIGTERM (0) or a lost lease (1).
  int run();

 private:
  // Start-up.
  void open_state();
  void warn_if_volume_too_small();  // the state store's caps against its file system
  void start_election();
  void queue_journal();
  void define_metrics();
  void serve();
  void start_background();
  // The main loop's duties, one pass each.
  void reload();
  bool lead_or_follow();  // false: the lease was lost
  void route_batch();
  void route_snapshot();
  // Hands delivered change sets to the history writer with the journal ids
  // it retires once they are kept (without a state store: retired now).
  // `batch`: change sets as they are, or shared with delivery (what
  // deliver_batch() keeps) - HistoryWriter::push takes either.
  template <class ChangeSets>
  void keep_history(ChangeSets batch, std::vector<std::string> journal_ids = {});
  void apply_rediscovery();
  void report();
  // Shutdown.
  void stop(int exit_code);

  // Retires routed change sets from the journal, a batch per transaction.
  void settle(std::vector<std::string>& ids);
  void apply_discovery(const kube::Discovery& d, const char* why);
  void compact_state();

  const Args& args_;
  std::unique_ptr<config::Config> cfg_owner_;
  const config::Config& cfg_;  // the start-up config: watches and server
  kube::Connection conn_;
  kube::Client client_;
  kube::Discovery discovery_;
  std::unique_ptr<state::StateStore> state_;
  std::unique_ptr<state::History> history_;  // with the state store: every change set this replica delivers
  std::unique_ptr<state::HistoryWriter> history_writer_;  // keeps them off the routing thread
  std::vector<model::ChangeSet> route_buffer_;            // route_batch()'s, reused
  Metrics metrics_;
  // The delivery half is replaced on SIGHUP; the probes read it under this lock.
  std::mutex pipeline_mu_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<config::Config> reload_cfg_;  // the config of a reloaded pipeline
  // Leader election: only the leader delivers. A follower watches all the
  // same, keeps what the leader has not confirmed (ha/handover.hpp) and
  // delivers it when it takes over.
  const bool electing_;
  ha::StreamKey stream_of_;
  ha::DeliveryProgress progress_;
  ha::HandoverBuffer handover_;
  std::unique_ptr<ha::LeaderElector> elector_;
  std::atomic<bool> elector_stop_{false};
  std::thread elector_thread_;
  uint64_t seen_lease_ = 0;
  std::atomic<bool> delivering_;  // read by the inventory thread
  ChangeQueue queue_;
  std::unique_ptr<watch::Watches> watches_;
  std::vector<std::string> watch_resources_;  // [watch] resources of the running config
  std::unique_ptr<server::HttpServer> http_;
  Metrics::Id queue_depth_ = -1, leader_gauge_ = -1, handover_gauge_ = -1, synced_gauge_ = -1;
  // Re-discovery runs on its own thread (two requests, but a slow server
  // must not hold up delivery); the main loop applies what it found.
  std::mutex rediscovered_mu_;
  std::optional<kube::Discovery> rediscovered_;
  std::unique_ptr<Periodic> rediscovery_, compaction_;
  bool ready_logged_ = false;
  // Inventory mode: snapshots for handlers with inventory_every, taken on a
  // thread of their own and routed by the main loop (cli/inventory.hpp).
  // It reads the running config through inventory_cfg_ (under
  // pipeline_mu_): the reloaded routes and handlers, with the start-up
  // [cluster], [watch] scope and [diff] the informers keep.
  std::shared_ptr<const config::Config> inventory_cfg_;
  std::unique_ptr<InventorySchedule> inventory_;
  std::optional<InventorySchedule::Batch> snapshot_batch_;  // routing it failed: tried again
  void set_inventory_config(const config::Config& running);
};

Daemon::Daemon(const Args& args, std::unique_ptr<config::Config> cfg, kube::Connection conn, kube::Discovery discovery)
    : args_(args),
      cfg_owner_(std::move(cfg)),
      cfg_(*cfg_owner_),
      conn_(std::move(conn)),
      client_(conn_),
      discovery_(std::move(discovery)),
      electing_(cfg_.leader_election.enabled),
      stream_of_([per_namespace = !cfg_.watch.namespaces.empty()](const model::ChangeSet& cs) {
        return ha::stream_key(cs, per_namespace);
      }),
      progress_(stream_of_),
      handover_(stream_of_, kHandoverCapacity),
      delivering_(!electing_),
      watch_resources_(cfg_.watch.resources) {
  if (resolve_watched(cfg_, discovery_).empty())
    spdlog::warn("[watch] resources: nothing matches yet; watching for it on re-discovery");
  open_state();
  pipeline_ = std::make_unique<Pipeline>(cfg_, args_, metrics_);
  start_election();
  if (delivering_) pipeline_->start_async(state_.get());  // undelivered change sets from the last run go first
  queue_journal();
  watches_ = std::make_unique<watch::Watches>(
      client_, cfg_, state_.get(), &metrics_,
      [this](std::vector<model::ChangeSet>&& batch) { queue_.push(std::move(batch)); });
  define_metrics();
  // Informers first: /readyz must never see a moment with none.
  watches_->reconcile(discovery_, cfg_.watch.resources);
  serve();
  metrics_.record(leader_gauge_, delivering_ ? 1 : 0);
  start_background();
}

void Daemon::set_inventory_config(const config::Config& running) {
  auto c = std::make_shared<config::Config>(running);
  c->cluster = cfg_.cluster;
  c->watch = cfg_.watch;
  c->diff = cfg_.diff;  // with the redaction key the informers use
  std::lock_guard lock(pipeline_mu_);
  inventory_cfg_ = std::move(c);
}

Daemon::~Daemon() {
  // Background duties first (they use the rest); the elector has been
  // joined by stop(), or is joined here if run() never ran.
  inventory_.reset();
  rediscovery_.reset();
  compaction_.reset();
  if (elector_thread_.joinable()) {
    elector_stop_ = true;
    elector_thread_.join();
  }
}

void Daemon::open_state() {
  if (!cfg_.state.path.empty()) {
    state_ = state::StateStore::open(cfg_.state.path, args_.has("--reset-state"));
    spdlog::info("state store {}", cfg_.state.path);
    history_ = std::make_unique<state::History>(state::History::path_for(cfg_.state.path));
    history_writer_ = std::make_unique<state::HistoryWriter>(*history_, state_.get());
    warn_if_volume_too_small();
  }
  // One redaction key for every informer, stable across restarts: the
  // configured one (the same on every replica), else the state store's.
  cfg_owner_->diff.redaction_key = configured_redaction_key(cfg_);
  if (cfg_owner_->diff.redaction_key.empty())
    cfg_owner_->diff.redaction_key = state_ ? state_->redaction_key() : diff::random_redaction_key();
}

void Daemon::start_election() {
  if (!electing_) return;
  const auto& le = cfg_.leader_election;
  ha::LeaseSettings ls;
  ls.lease_namespace = le.lease_namespace;
  ls.name = le.lease_name;
  ls.identity = le.identity;
  ls.lease_duration = std::chrono::seconds(le.lease_duration_s);
  ls.renew_deadline = std::chrono::seconds(le.renew_deadline_s);
  ls.retry_period = std::chrono::seconds(le.retry_period_s);
  elector_ = std::make_unique<ha::LeaderElector>(client_, ls);
  spdlog::info("leader election: lease {}/{} as {}; following until elected", ls.lease_namespace, ls.name,
               elector_->identity());
}

// The journal holds what the last run's watches checkpointed but its
// delivery had not yet written to the outbox (a kill -9 in between): it
// goes first, before anything the watches find now.
void Daemon::queue_journal() {
  if (!state_) return;
  for (auto& entry : state_->journal_pending()) {
    try {
      if (!entry.error.empty()) throw Error(entry.error);
      queue_.push(model::ChangeSet::from_json(entry.json));
    } catch (const std::exception& e) {
      spdlog::error("state store: journal entry {} is unreadable, dropped: {}", entry.id, e.what());
      state_->journal_done({entry.id});
    }
  }
  if (queue_.size()) spdlog::info("{} change set(s) from the journal of the last run go first", queue_.size());
}

void Daemon::define_metrics() {
  metrics_.record(metrics_.define(MetricKind::gauge, "kubetrail_build_info", "kubetrail version",
                                  {{"version", KUBETRAIL_VERSION},
                                   {"plugin_abi",
                                    std::to_string(KUBETRAIL_ABI_MAJOR) + "." + std::to_string(KUBETRAIL_ABI_MINOR)}}),
                  1);
  queue_depth_ = metrics_.define(MetricKind::gauge, "kubetrail_queue_depth", "change sets waiting for delivery");
  leader_gauge_ = metrics_.define(MetricKind::gauge, "kubetrail_leader",
                                  "1 while this replica delivers (always, without leader election)");
  handover_gauge_ = metrics_.define(MetricKind::gauge, "kubetrail_handover_buffered",
                                    "change sets a follower holds until the leader confirms them");
  synced_gauge_ =
      metrics_.define(MetricKind::gauge, "kubetrail_informers_synced", "informers that finished their initial list");
}

void Daemon::serve() {
  if (cfg_.server.listen.empty()) return;
  auto stall = std::chrono::seconds(cfg_.server.stall_timeout_s);
  server::Probes probes;
  probes.unhealthy = [this, stall] {
    {
      std::lock_guard lock(pipeline_mu_);
      if (auto why = pipeline_->stuck(stall); !why.empty()) return why;
    }
    return watches_->first_silent(stall);
  };
  probes.unready = [this] {
    {
      std::lock_guard lock(pipeline_mu_);
      if (pipeline_->handler_errors()) return std::string("a handler could not be created (see the log)");
    }
    auto pending = watches_->unsynced();
    return pending.empty() ? pending : "initial list not done: " + pending;
  };
  std::string api_off;
  server::ApiOptions api = server::api_access(cfg_.server, api_off);
  if (state_) {
    api.history = state::History::path_for(cfg_.state.path);
    // The outbox has one writer, this process: an operator's repair goes
    // through it, and the handler's worker is told to look again.
    state::StateStore* store = state_.get();
    api.dead_letters.list = [store] { return store->dead_letters(); };
    api.dead_letters.json = [store](int64_t seq) { return store->dead_letter_json(seq); };
    api.dead_letters.redeliver = [this, store](const state::OutboxLog::DeadLetter& d) {
      int64_t row = store->redeliver_dead_letter(d.seq);
      if (row) {
        spdlog::info("dead letter {} handed back to handler \"{}\"", d.id, d.handler);
        std::lock_guard lock(pipeline_mu_);
        pipeline_->outbox_grew(d.handler);
      }
      return row;
    };
    api.dead_letters.drop = [store](const state::OutboxLog::DeadLetter& d) {
      bool dropped = store->drop_dead_letter(d.seq);
      if (dropped) spdlog::info("dead letter {} of handler \"{}\" dropped", d.id, d.handler);
      return dropped;
    };
  }
  const bool api_on = api.enabled;
  http_ = std::make_unique<server::HttpServer>(cfg_.server.listen, metrics_, probes, std::move(api));
  if (api_on)
    spdlog::info("serving /metrics, /healthz, /readyz, the change API (/api/v1) and the timeline (/ui) on {}",
                 cfg_.server.listen);
  else
    spdlog::info("serving /metrics, /healthz, /readyz on {}; the change API and /ui are off: {}", cfg_.server.listen,
                 api_off);
}

void Daemon::start_background() {
  if (cfg_.watch.rediscover_s > 0)
    rediscovery_ = std::make_unique<Periodic>(std::chrono::seconds(cfg_.watch.rediscover_s), [this] {
      try {
        auto d = kube::Discovery::fetch(client_);
        std::lock_guard lock(rediscovered_mu_);
        rediscovered_ = std::move(d);
      } catch (const std::exception& e) {
        spdlog::warn("re-discovery failed (watching on with what was found before): {}", e.what());
      }
    });
  if (state_) {
    // What the last run announced of its snapshots is settled against the
    // outbox first: the compaction may forget the rows that prove a last
    // batch routed (watch::SnapshotLedger::settle_announced). Only here:
    // while running, an announcement is the one being routed right now.
    try {
      watch::SnapshotLedger(*state_).settle_announced();
    } catch (const std::exception& e) {
      spdlog::warn(
          "inventory: what the last run's snapshots reached is unreadable ({}); a snapshot cut short then is "
          "taken again",
          e.what());
    }
    compact_state();  // at start (a long stop may have aged much), then every 5 minutes
    compaction_ = std::make_unique<Periodic>(std::chrono::minutes(5), [this] { compact_state(); });
  }
  set_inventory_config(cfg_);
  inventory_ = std::make_unique<InventorySchedule>(InventorySchedule::Sources{
      client_, [this] { return watches_->watched(); },
      [this] {
        std::lock_guard lock(pipeline_mu_);
        return inventory_cfg_;
      },
      [this] { return delivering_.load() && watches_->synced_count() == watches_->informer_count(); }, state_.get(),
      &metrics_,
      elector_ ? std::function<int64_t(const std::string&)>(
                     [this](const std::string& handler) { return elector_->observed_snapshot(handler); })
               : nullptr,
      elector_ ? std::function<void(const std::string&, int64_t, bool)>(
                     [this](const std::string& handler, int64_t at, bool replace) {
                       elector_->snapshot_taken(handler, at, replace);
                     })
               : nullptr});
  // The elector runs until the pipeline has drained (a leader keeps renewing
  // while it delivers what is queued), then releases the lease.
  if (elector_)
    elector_thread_ = std::thread([this] {
      name_this_thread("kt-elector");
      elector_->run(elector_stop_);
    });
}

// The history and the outbox are held under their caps, but a volume
// smaller than the caps add up to fills first (the chart's and the
// kustomize base's were 1 GiB, against a 1 GiB history alone): the state
// store's writes then fail and change sets wait in memory. Said once, at
// start, naming the keys that make the budget.
void Daemon::warn_if_volume_too_small() {
  std::error_code ec;
  const auto dir = std::filesystem::absolute(cfg_.state.path, ec).parent_path();
  const auto space = std::filesystem::space(dir, ec);
  if (ec) return;  // not knowable here (the store opened, so the directory exists): nothing to say
  const uint64_t history = uint64_t{cfg_.history.max_mb} << 20, outbox = uint64_t{cfg_.state.outbox_max_mb} << 20;
  const uint64_t budget = state::StateStore::disk_budget(history, outbox);
  if (space.capacity >= budget) return;
  spdlog::warn(
      "state store {}: its file system holds {} MiB, less than the state store may take with this configuration ({} "
      "MiB: [history] max_mb {}, [state] outbox_max_mb {}, and up to {} MiB for the log and snapshot); it will fill "
      "before retention applies - lower [history] max_mb or give it a larger volume",
      cfg_.state.path, space.capacity >> 20, budget >> 20, cfg_.history.max_mb, cfg_.state.outbox_max_mb,
      state::StateStore::kUncappedBytes >> 20);
}

// Retention of what the state store keeps besides checkpoints: the change
// history, then the outbox (delivered ids, dead letters).
void Daemon::compact_state() {
  if (history_) {
    try {
      auto now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      size_t removed = history_->compact(int64_t{cfg_.history.retention_days} * 86400 * 1000,
                                         uint64_t{cfg_.history.max_mb} << 20, now);
      if (removed) spdlog::info("history: forgot {} change set(s) past [history] retention", removed);
    } catch (const Error& e) {
      spdlog::error("history compaction failed: {}", e.what());
    }
  }
  try {
    const uint64_t cap = uint64_t{cfg_.state.outbox_max_mb} << 20;
    auto c = state_->outbox_compact(int64_t{cfg_.state.retention_hours} * 3600, cap);
    if (c.delivered_removed_by_size || c.dead_removed_by_size)
      spdlog::warn("outbox over {} MB: forgot the oldest {} delivered id(s) and {} dead letter(s)",
                   cfg_.state.outbox_max_mb, c.delivered_removed_by_size, c.dead_removed_by_size);
    if (c.bytes > cap)
      spdlog::warn("outbox holds {} MB of undelivered change sets, over its {} MB cap: a handler is behind",
                   c.bytes >> 20, cfg_.state.outbox_max_mb);
  } catch (const Error& e) {
    spdlog::error("outbox compaction failed: {}", e.what());
  }
}

void Daemon::apply_discovery(const kube::Discovery& d, const char* why) {
  for (const auto& e : watches_->reconcile(d, watch_resources_))
    spdlog::warn("{}: [watch] resources: {}; not watched until it is served", why, e);
}

// Change sets have left the journal once delivery has written their
// outbox rows (or the follower's handover buffer holds them, or they go
// nowhere). Retired a batch at a time, in one transaction: a crash before
// it routes them again at the next start, and the outbox's (id, handler)
// rows keep any handler from seeing one twice.
void Daemon::settle(std::vector<std::string>& ids) {
  if (!state_ || ids.empty()) return;
  try {
    state_->journal_done(ids);
  } catch (const Error& e) {
    spdlog::error("{} ({} change set(s) will be routed again at the next start; no handler will see one twice)",
                  e.what(), ids.size());
  }
  ids.clear();
}

int Daemon::run() {
  int exit_code = 0;
  while (!g_stop.load()) {
    if (g_reload.exchange(false)) reload();
    if (!lead_or_follow()) {
      exit_code = 1;
      break;
    }
    route_batch();
    route_snapshot();
    apply_rediscovery();
    report();
  }
  stop(exit_code);
  return exit_code;
}

// SIGHUP: new routes and handlers. What is queued is delivered first (or,
// past 5 s, left in the outbox, which the new pipeline reads).
void Daemon::reload() {
  try {
    auto next_cfg = std::make_unique<config::Config>(load_config(args_));
    if (!same_scope(next_cfg->watch, cfg_.watch) || next_cfg->cluster.name != cfg_.cluster.name)
      spdlog::warn("reload: [watch] namespaces and selectors, and [cluster], take effect at the next start");
    // The informers read the fields routes match on when they make a change
    // set; they keep the [diff] options they started with.
    if (next_cfg->diff.field_paths != cfg_.diff.field_paths)
      spdlog::warn(
          "reload: the fields [[routes]] match.where names changed: change sets carry the new ones from "
          "the next start (until then a route on a field no change set carries matches nothing)");
    // [watch] resources take effect now, against a fresh discovery: a CRD
    // installed since start-up is found.
    watch_resources_ = next_cfg->watch.resources;
    try {
      apply_discovery(kube::Discovery::fetch(client_), "reload");
    } catch (const Error& e) {
      spdlog::warn("reload: discovery failed, [watch] resources unchanged: {}", e.what());
    }
    auto next = std::make_unique<Pipeline>(*next_cfg, args_, metrics_);
    pipeline_->flush(std::chrono::seconds(5), KUBETRAIL_FLUSH_RELOAD);
    {
      std::lock_guard lock(pipeline_mu_);
      pipeline_ = std::move(next);
    }
    set_inventory_config(*next_cfg);
    {
      std::lock_guard lock(pipeline_mu_);
      reload_cfg_ = std::move(next_cfg);
    }
    // What the old handlers left is in the outbox now; this replica
    // delivers it, so the tracker stops waiting for it.
    progress_.settle_all();
    if (delivering_) pipeline_->start_async(state_.get(), electing_ ? &progress_ : nullptr);
    spdlog::info("reloaded {}: {} handler(s), {} route(s)", pipeline_->config().source,
                 pipeline_->config().handlers.size(), pipeline_->config().routes.size());
  } catch (const Error& e) {
    spdlog::error("reload failed, keeping the running configuration: {}", e.what());
  }
}

bool Daemon::lead_or_follow() {
  if (!elector_) return true;
  if (!delivering_ && elector_->leading()) {
    delivering_ = true;
    auto last = elector_->observed_progress();
    progress_.seed(last);
    keep_history(handover_.take_covered(last));  // the last leader delivered them
    auto pending = handover_.take();
    spdlog::info("leading: delivering {} change set(s) the last leader had not confirmed", pending.size());
    pipeline_->start_async(state_.get(), &progress_);  // this replica's own outbox leftovers first
    for (const auto& cs : pending) pipeline_->deliver(cs);
    keep_history(std::move(pending));
  }
  if (delivering_ && elector_->lost()) {
    // Another replica may be delivering: stop now, exit non-zero, and let
    // the supervisor start us again as a follower (as client-go users do).
    spdlog::error("lost the lease: stopping delivery and exiting");
    return false;
  }
  if (delivering_) {
    elector_->publish(progress_.delivered_through());
  } else if (elector_->observed_generation() != seen_lease_) {
    seen_lease_ = elector_->observed_generation();
    // What the leader says it delivered goes into this replica's history
    // too, so that after a takeover the history does not begin there.
    keep_history(handover_.take_covered(elector_->observed_progress()));
  }
  metrics_.record(leader_gauge_, delivering_ ? 1 : 0);
  metrics_.record(handover_gauge_, static_cast<double>(handover_.size()));
  return true;
}

// Every change set this replica hands to delivery - routed from the
// watches or taken over from the handover buffer - goes through here, once
// its outbox rows are written: the history writer keeps it, then retires
// its journal entry (state/history_writer.hpp).
template <class ChangeSets>
void Daemon::keep_history(ChangeSets batch, std::vector<std::string> journal_ids) {
  if (history_writer_)
    history_writer_->push(std::move(batch), std::move(journal_ids));
  else
    settle(journal_ids);
}

// What the watches produced since the last pass (up to a batch, waiting up
// to 200 ms for the first), so that the journal is retired once per batch.
void Daemon::route_batch() {
  // The vector of the last pass, its memory kept: one grown afresh from
  // empty took a chain of reallocations of up to 256 change sets per pass
  // (perf: the routing thread's largest cost after the copy it fed).
  // deliver_batch() leaves it holding moved-from change sets.
  std::vector<model::ChangeSet>& batch = route_buffer_;
  batch.clear();
  // While a snapshot is being routed the loop does not idle between passes.
  const bool snapshots_waiting = snapshot_batch_ || (inventory_ && inventory_->pending());
  queue_.pop_into(batch, kRouteBatch, std::chrono::milliseconds(snapshots_waiting ? 0 : 200));
  if (batch.empty()) return;
  std::vector<std::string> routed;
  routed.reserve(batch.size());
  for (const auto& cs : batch) routed.push_back(cs.id);
  try {
    // The batch's outbox rows and the journal entries they route in one
    // transaction (one commit per batch, not per change set and handler).
    if (delivering_) {
      // The outbox rows first, then the history writer keeps the batch
      // and retires its journal entries: a crash in between routes them
      // again at the next start, the outbox drops what its handlers have,
      // and the history keeps each once - and routing never waits for the
      // history's SQLite.
      std::vector<std::shared_ptr<const model::ChangeSet>> kept;
      pipeline_->deliver_batch(std::move(batch), history_writer_ ? &kept : nullptr);
      keep_history(std::move(kept), std::move(routed));
      return;
    }
    for (const auto& cs : batch)
      if (pipeline_->accepts(cs)) handover_.push(cs);
  } catch (const std::exception& e) {
    // The outbox could not be written (the state store failed): nothing of
    // the batch was queued; it goes back to the head of the queue, in
    // order, and is tried again. deliver_batch() moves the batch only
    // when it returns: on a throw it is as it was given.
    // NOLINTBEGIN(bugprone-use-after-move)
    spdlog::error("{} change set(s) could not be queued for delivery, retrying in 1 s: {}", batch.size(), e.what());
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) queue_.push_front(std::move(*it));
    // NOLINTEND(bugprone-use-after-move)
    std::this_thread::sleep_for(std::chrono::seconds(1));
    return;
  }
  settle(routed);  // a follower: the handover buffer holds them now (ha/handover.hpp)
}

// A batch of a handler's snapshot: routed down its inventory route (the
// outbox rows first, as for change sets), never into the history or the
// journal - a snapshot is no change. A follower takes none.
void Daemon::route_snapshot() {
  if (!inventory_ || !delivering_) return;
  if (!snapshot_batch_) snapshot_batch_ = inventory_->next();
  if (!snapshot_batch_) return;
  try {
    pipeline_->deliver_batch(std::move(snapshot_batch_->items));
  } catch (const std::exception& e) {
    spdlog::error("{} snapshot item(s) could not be queued for delivery, retrying: {}", snapshot_batch_->items.size(),
                  e.what());
    return;
  }
  if (snapshot_batch_->routed) snapshot_batch_->routed();
  snapshot_batch_.reset();
}

void Daemon::apply_rediscovery() {
  std::optional<kube::Discovery> d;
  {
    std::lock_guard lock(rediscovered_mu_);
    d.swap(rediscovered_);
  }
  if (d) apply_discovery(*d, "re-discovery");
}

void Daemon::report() {
  metrics_.record(queue_depth_, static_cast<double>(queue_.size() + pipeline_->queued()));
  metrics_.record(synced_gauge_, static_cast<double>(watches_->synced_count()));
  if (!ready_logged_ && watches_->synced_count() == watches_->informer_count()) {
    spdlog::info("ready: {} informer(s) synced; watching", watches_->informer_count());
    ready_logged_ = true;
  }
}

void Daemon::stop(int exit_code) {
  spdlog::info("stopping: closing watches");
  g_stop = true;
  inventory_.reset();  // a snapshot cut short is taken again, whole, at the next start
  watches_->stop_all();
  rediscovery_.reset();  // wakes it now (a fetch in flight ends by its own timeout)
  compaction_.reset();
  if (delivering_ && exit_code == 0) {
    std::vector<model::ChangeSet> drained;
    std::vector<std::string> routed;
    while (auto cs = queue_.pop(std::chrono::milliseconds(0))) {
      pipeline_->deliver(*cs);
      routed.push_back(cs->id);
      drained.push_back(std::move(*cs));
      if (routed.size() >= kRouteBatch) {
        keep_history(std::move(drained), std::move(routed));
        drained.clear();
        routed.clear();
      }
    }
    keep_history(std::move(drained), std::move(routed));
    pipeline_->flush();
  } else {
    pipeline_->flush(std::chrono::milliseconds(0));  // what is queued stays in the outbox (or the journal)
  }
  if (elector_) {
    elector_stop_ = true;
    elector_thread_.join();
    if (exit_code == 0) {
      elector_->publish(progress_.delivered_through());
      elector_->release();  // a follower takes over at once
    }
  }
  history_writer_.reset();  // what it holds is kept (and its journal entries retired) before exit
  spdlog::info("stopped");
}

// Discovery, retried with backoff while the API server cannot be reached
// (at boot, in a cluster whose control plane restarts, behind a VPN not yet
// up): kubetrail says so at every attempt and serves /healthz (200) and
// /readyz (503, with the reason) meanwhile, so that a pod is not restarted
// for what is not its fault. A refusal (401, 403) or a malformed answer is
// not retried: that is a configuration error (exit 2). nullopt: stopped by
// SIGINT/SIGTERM while waiting.
std::optional<kube::Discovery> wait_for_api_server(const kube::Connection& conn, const config::Config& cfg) {
  kube::Client client(conn);
  Metrics metrics;
  std::mutex mu;
  std::string reason;
  std::unique_ptr<server::HttpServer> probes;
  Backoff backoff(
      BackoffSettings{std::chrono::milliseconds(500), std::chrono::seconds(30), std::chrono::minutes(2), 0.25});
  std::mt19937 rng{std::random_device{}()};
  for (uint32_t attempt = 1; !g_stop.load(); ++attempt) {
    try {
      auto discovery = kube::Discovery::fetch(client);
      if (attempt > 1) spdlog::info("API server {} reachable after {} attempt(s)", conn.server, attempt);
      return discovery;
    } catch (const kube::Unavailable& e) {
      {
        std::lock_guard lock(mu);
        reason = std::string("waiting for the API server: ") + e.what();
      }
      if (!probes && !cfg.server.listen.empty())
        probes = std::make_unique<server::HttpServer>(cfg.server.listen, metrics,
                                                      server::Probes{[] { return std::string(); },
                                                                     [&] {
                                                                       std::lock_guard lock(mu);
                                                                       return reason;
                                                                     }});
      auto delay = backoff.next(std::chrono::steady_clock::now(), std::uniform_real_distribution<double>(0, 1)(rng));
      spdlog::warn("{} (attempt {}); retrying in {:.1f} s", e.what(), attempt,
                   static_cast<double>(delay.count()) / 1000);
      for (auto until = std::chrono::steady_clock::now() + delay;
           !g_stop.load() && std::chrono::steady_clock::now() < until;)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return std::nullopt;
}

}  // namespace

int run_daemon(const Args& args) {
  auto cfg = std::make_unique<config::Config>(load_config(args));  // errors: exit 2 through main()
  setup_logging(*cfg, args);
  if (cfg->watch.resources.empty()) throw Error(cfg->source + ": [watch] resources is empty: nothing to watch");
  kube::Connection conn = kube::resolve_connection(args.get("--kubeconfig", cfg->cluster.kubeconfig),
                                                   args.get("--context", cfg->cluster.context));
  conn.compress = kube::choose_compression(cfg->cluster.compression, conn);
  spdlog::info("connecting to {} ({}; responses {})", conn.server, conn.source,
               conn.compress ? "gzip-compressed" : "not compressed");
  install_signal_handlers();
  auto discovery = wait_for_api_server(conn, *cfg);
  if (!discovery) return 0;  // SIGINT/SIGTERM while waiting
  Daemon daemon(args, std::move(cfg), std::move(conn), std::move(*discovery));
  return daemon.run();
}

}  // namespace kubetrail::cli
