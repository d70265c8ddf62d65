// `kubetrail run`: watch a cluster. Discovery resolves [watch] resources,
// one informer thread per resource (and namespace), change sets flow through
// one queue to the delivery pipeline on the main thread. SIGINT/SIGTERM stop
// the watches, deliver what is queued, flush the handlers and exit 0.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "cli/pipeline.hpp"
#include "common/error.hpp"
#include "common/periodic.hpp"
#include "ha/handover.hpp"
#include "ha/leader_election.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"
#include "server/http_server.hpp"
#include "state/state_store.hpp"
#include "version.hpp"
#include "watch/informer.hpp"
#include "watch/watches.hpp"

namespace kubetrail::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void on_signal(int) { g_stop.store(true); }
extern "C" void on_hangup(int) { g_reload.store(true); }

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

}  // namespace

int run_daemon(const Args& args) {
  auto cfg_owner = std::make_unique<config::Config>(load_config(args));  // errors: exit 2 through main()
  const config::Config& cfg = *cfg_owner;                                // the start-up config: watches and server
  setup_logging(cfg, args);
  if (cfg.watch.resources.empty()) {
    std::cerr << "kubetrail run: " << cfg.source << ": [watch] resources is empty: nothing to watch\n";
    return 2;
  }
  std::string kubeconfig = args.get("--kubeconfig", cfg.cluster.kubeconfig);
  std::string context = args.get("--context", cfg.cluster.context);
  kube::Connection conn = kube::resolve_connection(kubeconfig, context);
  spdlog::info("connecting to {} ({})", conn.server, conn.source);
  kube::Client client(conn);
  kube::Discovery discovery = kube::Discovery::fetch(client);

  std::vector<std::string> unresolved;
  if (watch::Watches::resolve(discovery, cfg.watch.resources, unresolved).empty() && unresolved.empty())
    spdlog::warn("[watch] resources: nothing matches yet; watching for it on re-discovery");
  if (!unresolved.empty()) {
    std::cerr << "kubetrail run: " << cfg.source << ": [watch] resources:";
    for (const auto& e : unresolved) std::cerr << "\n  " << e;
    std::cerr << "\n";
    return 2;
  }

  std::unique_ptr<state::StateStore> state;
  if (!cfg.state.path.empty()) {
    state = state::StateStore::open(cfg.state.path, args.has("--reset-state"));
    spdlog::info("state store {}", cfg.state.path);
  }
  // One redaction key for every informer, stable across restarts: the
  // configured one (the same on every replica), else the state store's.
  cfg_owner->diff.redaction_key = configured_redaction_key(cfg);
  if (cfg_owner->diff.redaction_key.empty())
    cfg_owner->diff.redaction_key = state ? state->redaction_key() : diff::random_redaction_key();

  Metrics metrics;
  // The delivery half is replaced on SIGHUP; the probes read it under this lock.
  std::mutex pipeline_mu;
  auto pipeline = std::make_unique<Pipeline>(cfg, args, metrics);

  // Leader election: only the leader delivers. A follower watches all the
  // same, keeps what the leader has not confirmed (ha/handover.hpp) and
  // delivers it when it takes over.
  const bool electing = cfg.leader_election.enabled;
  const bool per_namespace = !cfg.watch.namespaces.empty();
  ha::StreamKey stream_of = [per_namespace](const model::ChangeSet& cs) { return ha::stream_key(cs, per_namespace); };
  ha::DeliveryProgress progress(stream_of);
  ha::HandoverBuffer handover(stream_of, kHandoverCapacity);
  std::unique_ptr<ha::LeaderElector> elector;
  if (electing) {
    const auto& le = cfg.leader_election;
    ha::LeaseSettings ls;
    ls.lease_namespace = le.lease_namespace;
    ls.name = le.lease_name;
    ls.identity = le.identity;
    ls.lease_duration = std::chrono::seconds(le.lease_duration_s);
    ls.renew_deadline = std::chrono::seconds(le.renew_deadline_s);
    ls.retry_period = std::chrono::seconds(le.retry_period_s);
    elector = std::make_unique<ha::LeaderElector>(client, ls);
    spdlog::info("leader election: lease {}/{} as {}; following until elected", ls.lease_namespace, ls.name,
                 elector->identity());
  }
  bool delivering = !electing;
  if (delivering) pipeline->start_async(state.get());  // undelivered change sets from the last run go first
  ChangeQueue queue;
  // The journal holds what the last run's watches checkpointed but its
  // delivery had not yet written to the outbox (a kill -9 in between): it
  // goes first, before anything the watches find now.
  if (state) {
    for (auto& entry : state->journal_pending()) {
      try {
        if (!entry.error.empty()) throw Error(entry.error);
        queue.push(model::ChangeSet::from_json(entry.json));
      } catch (const std::exception& e) {
        spdlog::error("state store: journal entry {} is unreadable, dropped: {}", entry.id, e.what());
        state->journal_done({entry.id});
      }
    }
    if (queue.size()) spdlog::info("{} change set(s) from the journal of the last run go first", queue.size());
  }
  // Change sets have left the journal once delivery has written their
  // outbox rows (or the follower's handover buffer holds them, or they go
  // nowhere). Retired a batch at a time, in one transaction: a crash before
  // it routes them again at the next start, and the outbox's (id, handler)
  // rows keep any handler from seeing one twice.
  auto settle = [&state](std::vector<std::string>& ids) {
    if (!state || ids.empty()) return;
    try {
      state->journal_done(ids);
    } catch (const Error& e) {
      spdlog::error("{} ({} change set(s) will be routed again at the next start; no handler will see one twice)",
                    e.what(), ids.size());
    }
    ids.clear();
  };
  watch::Watches watches(client, cfg, state.get(), &metrics,
                         [&queue](model::ChangeSet&& cs) { queue.push(std::move(cs)); });

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_hangup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);

  metrics.record(
      metrics.define(MetricKind::gauge, "kubetrail_build_info", "kubetrail version",
                     {{"version", KUBETRAIL_VERSION},
                      {"plugin_abi", std::to_string(KUBETRAIL_ABI_MAJOR) + "." + std::to_string(KUBETRAIL_ABI_MINOR)}}),
      1);
  auto queue_depth = metrics.define(MetricKind::gauge, "kubetrail_queue_depth", "change sets waiting for delivery");
  auto leader_gauge = metrics.define(MetricKind::gauge, "kubetrail_leader",
                                     "1 while this replica delivers (always, without leader election)");
  auto handover_gauge = metrics.define(MetricKind::gauge, "kubetrail_handover_buffered",
                                       "change sets a follower holds until the leader confirms them");
  auto synced_gauge =
      metrics.define(MetricKind::gauge, "kubetrail_informers_synced", "informers that finished their initial list");
  // Informers first: /readyz must never see a moment with none.
  watches.reconcile(discovery, cfg.watch.resources);
  std::unique_ptr<server::HttpServer> http;
  if (!cfg.server.listen.empty()) {
    auto stall = std::chrono::seconds(cfg.server.stall_timeout_s);
    server::Probes probes;
    probes.unhealthy = [&watches, &pipeline, &pipeline_mu, stall] {
      {
        std::lock_guard lock(pipeline_mu);
        if (auto why = pipeline->stuck(stall); !why.empty()) return why;
      }
      return watches.first_silent(stall);
    };
    probes.unready = [&watches, &pipeline, &pipeline_mu] {
      {
        std::lock_guard lock(pipeline_mu);
        if (pipeline->handler_errors()) return std::string("a handler could not be created (see the log)");
      }
      auto pending = watches.first_unsynced();
      return pending.empty() ? pending : "initial list of " + pending + " not done";
    };
    http = std::make_unique<server::HttpServer>(cfg.server.listen, metrics, probes);
    spdlog::info("serving /metrics, /healthz, /readyz on {}", cfg.server.listen);
  }

  metrics.record(leader_gauge, delivering ? 1 : 0);
  // Re-discovery on its own thread (two requests, but a slow server must not
  // hold up delivery); the main loop applies what it found.
  std::mutex rediscovered_mu;
  std::optional<kube::Discovery> rediscovered;
  std::unique_ptr<Periodic> rediscovery;
  if (cfg.watch.rediscover_s > 0)
    rediscovery = std::make_unique<Periodic>(std::chrono::seconds(cfg.watch.rediscover_s), [&] {
      try {
        auto d = kube::Discovery::fetch(client);
        std::lock_guard lock(rediscovered_mu);
        rediscovered = std::move(d);
      } catch (const std::exception& e) {
        spdlog::warn("re-discovery failed (watching on with what was found before): {}", e.what());
      }
    });
  // What the watches follow: [watch] resources of the running config.
  std::vector<std::string> watch_resources = cfg.watch.resources;
  auto apply_discovery = [&](const kube::Discovery& d, const char* why) {
    for (const auto& e : watches.reconcile(d, watch_resources))
      spdlog::warn("{}: [watch] resources: {}; not watched until it is served", why, e);
  };
  // The elector runs until the pipeline has drained (a leader keeps renewing
  // while it delivers what is queued), then releases the lease.
  std::atomic<bool> elector_stop{false};
  std::thread elector_thread;
  if (elector) elector_thread = std::thread([&] { elector->run(elector_stop); });
  uint64_t seen_lease = 0;
  int exit_code = 0;
  bool ready_logged = false;
  std::unique_ptr<config::Config> reload_cfg;  // the config of a reloaded pipeline
  auto next_compaction = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    if (g_reload.exchange(false)) {
      // SIGHUP: new routes and handlers. What is queued is delivered first
      // (or, past 5 s, left in the outbox, which the new pipeline reads).
      try {
        auto next_cfg = std::make_unique<config::Config>(load_config(args));
        if (!same_scope(next_cfg->watch, cfg.watch) || next_cfg->cluster.name != cfg.cluster.name)
          spdlog::warn("reload: [watch] namespaces and selectors, and [cluster], take effect at the next start");
        // [watch] resources take effect now, against a fresh discovery: a CRD
        // installed since start-up is found.
        watch_resources = next_cfg->watch.resources;
        try {
          apply_discovery(kube::Discovery::fetch(client), "reload");
        } catch (const Error& e) {
          spdlog::warn("reload: discovery failed, [watch] resources unchanged: {}", e.what());
        }
        auto next = std::make_unique<Pipeline>(*next_cfg, args, metrics);
        pipeline->flush(std::chrono::seconds(5), KUBETRAIL_FLUSH_RELOAD);
        {
          std::lock_guard lock(pipeline_mu);
          pipeline = std::move(next);
          reload_cfg = std::move(next_cfg);
        }
        // What the old handlers left is in the outbox now; this replica
        // delivers it, so the tracker stops waiting for it.
        progress.settle_all();
        if (delivering) pipeline->start_async(state.get(), electing ? &progress : nullptr);
        spdlog::info("reloaded {}: {} handler(s), {} route(s)", pipeline->config().source,
                     pipeline->config().handlers.size(), pipeline->config().routes.size());
      } catch (const Error& e) {
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
      }
    }
    if (elector) {
      if (!delivering && elector->leading()) {
        delivering = true;
        auto last = elector->observed_progress();
        progress.seed(last);
        handover.forget_covered(last);
        auto pending = handover.take();
        spdlog::info("leading: delivering {} change set(s) the last leader had not confirmed", pending.size());
        pipeline->start_async(state.get(), &progress);  // this replica's own outbox leftovers first
        for (const auto& cs : pending) pipeline->deliver(cs);
      }
      if (delivering && elector->lost()) {
        // Another replica may be delivering: stop now, exit non-zero, and let
        // the supervisor start us again as a follower (as client-go users do).
        spdlog::error("lost the lease: stopping delivery and exiting");
        exit_code = 1;
        break;
      }
      if (delivering) {
        elector->publish(progress.delivered_through());
      } else if (elector->observed_generation() != seen_lease) {
        seen_lease = elector->observed_generation();
        handover.forget_covered(elector->observed_progress());
      }
      metrics.record(leader_gauge, delivering ? 1 : 0);
      metrics.record(handover_gauge, static_cast<double>(handover.size()));
    }
    // What the watches produced since the last pass (up to a batch), so
    // that the journal is retired once per batch, not once per change set.
    std::vector<std::string> routed;
    for (auto wait = std::chrono::milliseconds(200); routed.size() < kRouteBatch; wait = {}) {
      auto cs = queue.pop(wait);
      if (!cs) break;
      try {
        if (delivering)
          pipeline->deliver(*cs);
        else if (pipeline->accepts(*cs))
          handover.push(*cs);
        routed.push_back(cs->id);
      } catch (const std::exception& e) {
        // The outbox could not be written (the state store failed): the
        // change set goes back to the head of the queue and is tried again.
        spdlog::error("change set {} could not be queued for delivery, retrying in 1 s: {}", cs->id, e.what());
        queue.push_front(std::move(*cs));
        std::this_thread::sleep_for(std::chrono::seconds(1));
        break;
      }
    }
    settle(routed);
    metrics.record(queue_depth, static_cast<double>(queue.size() + pipeline->queued()));
    if (state && std::chrono::steady_clock::now() > next_compaction) {
      try {
        auto c =
            state->outbox_compact(int64_t{cfg.state.retention_hours} * 3600, uint64_t{cfg.state.outbox_max_mb} << 20);
        if (c.delivered_removed_by_size || c.dead_removed_by_size)
          spdlog::warn("outbox over {} MB: forgot the oldest {} delivered id(s) and {} dead letter(s)",
                       cfg.state.outbox_max_mb, c.delivered_removed_by_size, c.dead_removed_by_size);
        if (c.bytes > uint64_t{cfg.state.outbox_max_mb} << 20)
          spdlog::warn("outbox holds {} MB of undelivered change sets, over its {} MB cap: a handler is behind",
                       c.bytes >> 20, cfg.state.outbox_max_mb);
      } catch (const Error& e) {
        spdlog::error("outbox compaction failed: {}", e.what());
      }
      next_compaction = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    }
    {
      std::optional<kube::Discovery> d;
      {
        std::lock_guard lock(rediscovered_mu);
        d.swap(rediscovered);
      }
      if (d) apply_discovery(*d, "re-discovery");
    }
    metrics.record(synced_gauge, static_cast<double>(watches.synced_count()));
    if (!ready_logged && watches.first_unsynced().empty()) {
      spdlog::info("ready: {} informer(s) synced; watching", watches.informer_count());
      ready_logged = true;
    }
  }
  spdlog::info("stopping: closing watches");
  g_stop = true;
  watches.stop_all();
  rediscovery.reset();  // wakes it now (a fetch in flight ends by its own timeout)
  if (delivering && exit_code == 0) {
    std::vector<std::string> routed;
    while (auto cs = queue.pop(std::chrono::milliseconds(0))) {
      pipeline->deliver(*cs);
      routed.push_back(cs->id);
      if (routed.size() >= kRouteBatch) settle(routed);
    }
    settle(routed);
    pipeline->flush();
  } else {
    pipeline->flush(std::chrono::milliseconds(0));  // what is queued stays in the outbox (or the journal)
  }
  if (elector) {
    elector_stop = true;
    elector_thread.join();
    if (exit_code == 0) {
      elector->publish(progress.delivered_through());
      elector->release();  // a follower takes over at once
    }
  }
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace kubetrail::cli
