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
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/informer.hpp"
#include "kube/kubeconfig.hpp"
#include "server/http_server.hpp"
#include "state/state_store.hpp"
#include "version.hpp"

namespace kubetrail::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
extern "C" void on_signal(int) { g_stop.store(true); }
extern "C" void on_hangup(int) { g_reload.store(true); }

bool same_watch(const config::WatchConfig& a, const config::WatchConfig& b) {
  return a.resources == b.resources && a.namespaces == b.namespaces && a.exclude_namespaces == b.exclude_namespaces &&
         a.label_selector == b.label_selector && a.field_selector == b.field_selector;
}

// Change sets from the informer threads to the delivery thread.
class ChangeQueue {
 public:
  void push(diff::ChangeSet&& cs) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(cs));
    }
    cv_.notify_one();
  }
  // Waits up to `wait` for one; nullopt on timeout.
  size_t size() {
    std::lock_guard lock(mu_);
    return q_.size();
  }
  std::optional<diff::ChangeSet> pop(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !q_.empty(); })) return std::nullopt;
    auto cs = std::move(q_.front());
    q_.pop_front();
    return cs;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<diff::ChangeSet> q_;
};

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

  std::vector<kube::ResourceType> types;
  std::string unresolved;
  for (const auto& name : cfg.watch.resources) {
    auto t = discovery.resolve(name);
    if (t)
      types.push_back(t.value());
    else
      unresolved += "\n  " + t.error();
  }
  if (!unresolved.empty()) {
    std::cerr << "kubetrail run: " << cfg.source << ": [watch] resources:" << unresolved << "\n";
    return 2;
  }

  std::unique_ptr<state::StateStore> state;
  if (!cfg.state.path.empty()) {
    state = state::StateStore::open(cfg.state.path, args.has("--reset-state"));
    spdlog::info("state store {}", cfg.state.path);
  }

  server::Metrics metrics;
  // The delivery half is replaced on SIGHUP; the probes read it under this lock.
  std::mutex pipeline_mu;
  auto pipeline = std::make_unique<Pipeline>(cfg, args, metrics);
  pipeline->start_async(state.get());  // undelivered change sets from the last run go first
  ChangeQueue queue;
  std::vector<std::unique_ptr<kube::Informer>> informers;
  for (const auto& t : types) {
    std::vector<std::string> scopes{""};
    if (t.namespaced && !cfg.watch.namespaces.empty()) scopes = cfg.watch.namespaces;
    for (const auto& ns : scopes) {
      kube::InformerOptions opt;
      opt.type = t;
      opt.namespace_scope = ns;
      opt.exclude_namespaces = cfg.watch.exclude_namespaces;
      opt.label_selector = cfg.watch.label_selector;
      opt.field_selector = cfg.watch.field_selector;
      opt.state = state.get();
      opt.metrics = &metrics;
      informers.push_back(std::make_unique<kube::Informer>(
          client, opt, cfg.cluster.name, cfg.diff, [&queue](diff::ChangeSet&& cs) { queue.push(std::move(cs)); }));
    }
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_hangup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);

  metrics.record(metrics.define(server::MetricKind::gauge, "kubetrail_build_info", "kubetrail version",
                                {{"version", KUBETRAIL_VERSION}, {"plugin_abi", "1.0"}}),
                 1);
  auto queue_depth =
      metrics.define(server::MetricKind::gauge, "kubetrail_queue_depth", "change sets waiting for delivery");
  auto synced_gauge = metrics.define(server::MetricKind::gauge, "kubetrail_informers_synced",
                                     "informers that finished their initial list");
  std::unique_ptr<server::HttpServer> http;
  if (!cfg.server.listen.empty()) {
    auto stall = std::chrono::seconds(cfg.server.stall_timeout_s);
    server::Probes probes;
    probes.unhealthy = [&informers, &pipeline, &pipeline_mu, stall] {
      {
        std::lock_guard lock(pipeline_mu);
        if (auto why = pipeline->stuck(stall); !why.empty()) return why;
      }
      auto now = std::chrono::steady_clock::now();
      for (const auto& i : informers)
        if (i->synced() && now - i->last_heard() > stall)
          return "watch of " + i->name() + " silent for " +
                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - i->last_heard()).count()) +
                 " s (no event, no bookmark; stall timeout " + std::to_string(stall.count()) + " s)";
      return std::string();
    };
    probes.unready = [&informers, &pipeline, &pipeline_mu] {
      {
        std::lock_guard lock(pipeline_mu);
        if (pipeline->handler_errors()) return std::string("a handler could not be created (see the log)");
      }
      for (const auto& i : informers)
        if (!i->synced()) return "initial list of " + i->name() + " not done";
      return std::string();
    };
    http = std::make_unique<server::HttpServer>(cfg.server.listen, metrics, probes);
    spdlog::info("serving /metrics, /healthz, /readyz on {}", cfg.server.listen);
  }

  std::vector<std::thread> threads;
  for (auto& inf : informers) threads.emplace_back([&inf] { inf->run(g_stop); });
  bool ready_logged = false;
  std::unique_ptr<config::Config> reload_cfg;  // the config of a reloaded pipeline
  auto next_compaction = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    if (g_reload.exchange(false)) {
      // SIGHUP: new routes and handlers. What is queued is delivered first
      // (or, past 5 s, left in the outbox, which the new pipeline reads).
      try {
        auto next_cfg = std::make_unique<config::Config>(load_config(args));
        if (!same_watch(next_cfg->watch, cfg.watch) || next_cfg->cluster.name != cfg.cluster.name)
          spdlog::warn("reload: [watch] and [cluster] changes take effect at the next start");
        auto next = std::make_unique<Pipeline>(*next_cfg, args, metrics);
        pipeline->flush(std::chrono::seconds(5), KUBETRAIL_FLUSH_RELOAD);
        {
          std::lock_guard lock(pipeline_mu);
          pipeline = std::move(next);
          reload_cfg = std::move(next_cfg);
        }
        pipeline->start_async(state.get());
        spdlog::info("reloaded {}: {} handler(s), {} route(s)", pipeline->config().source,
                     pipeline->config().handlers.size(), pipeline->config().routes.size());
      } catch (const Error& e) {
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
      }
    }
    if (auto cs = queue.pop(std::chrono::milliseconds(200))) pipeline->deliver(*cs);
    metrics.record(queue_depth, static_cast<double>(queue.size() + pipeline->queued()));
    if (state && std::chrono::steady_clock::now() > next_compaction) {
      state->outbox_compact(7 * 24 * 3600);  // delivered entries are kept a week, for id de-duplication
      next_compaction = std::chrono::steady_clock::now() + std::chrono::hours(1);
    }
    metrics.record(synced_gauge, static_cast<double>(std::count_if(informers.begin(), informers.end(),
                                                                   [](auto& i) { return i->synced(); })));
    if (!ready_logged && std::all_of(informers.begin(), informers.end(), [](auto& i) { return i->synced(); })) {
      spdlog::info("ready: {} informer(s) synced; watching", informers.size());
      ready_logged = true;
    }
  }
  spdlog::info("stopping: closing watches");
  for (auto& t : threads) t.join();
  while (auto cs = queue.pop(std::chrono::milliseconds(0))) pipeline->deliver(*cs);
  pipeline->flush();
  spdlog::info("stopped");
  return 0;
}

}  // namespace kubetrail::cli
