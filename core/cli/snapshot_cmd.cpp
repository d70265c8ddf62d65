// `kubetrail snapshot`: inventory mode on demand. Lists what [watch]
// resources resolve to and prints every object as a Snapshot change set
// (JSON lines on stdout), or - with --handler - what that handler's routes
// take, sent to it through its plugin as `run` would send its periodic
// inventory (--print: shown instead of sent).
#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/common.hpp"
#include "cli/inventory.hpp"
#include "cli/pipeline.hpp"
#include "common/error.hpp"
#include "diff/redaction.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"

namespace kubetrail::cli {

int run_snapshot(const Args& args) {
  config::Config cfg = load_config(args);
  setup_logging(cfg, args);
  if (cfg.watch.resources.empty()) throw Error(cfg.source + ": [watch] resources is empty: nothing to list");
  const std::string handler = args.get("--handler", "");
  if (std::string why = handler.empty() ? "" : config::unknown_handler(cfg, handler); !why.empty())
    throw Error(cfg.source + ": --handler: " + why);
  const bool print = handler.empty() || args.has("--print");
  // Secret values redacted as run redacts them when the key is configured
  // (else markers of this run's own key: a value is still never shown).
  cfg.diff.redaction_key = configured_redaction_key(cfg);
  if (cfg.diff.redaction_key.empty()) cfg.diff.redaction_key = diff::random_redaction_key();

  kube::Connection conn = kube::resolve_connection(args.get("--kubeconfig", cfg.cluster.kubeconfig),
                                                   args.get("--context", cfg.cluster.context));
  conn.compress = kube::choose_compression(cfg.cluster.compression, conn);
  kube::Client client(std::move(conn));
  kube::Discovery discovery = kube::Discovery::fetch(client);
  auto resources = resolve_watched(cfg, discovery);  // as run resolves them

  Metrics metrics;
  std::unique_ptr<Pipeline> pipeline;
  std::unique_ptr<route::Router> own_router;  // printing: only to choose objects (takes())
  if (!print) {
    pipeline = std::make_unique<Pipeline>(cfg, args, metrics);
    const plugin::Handler* h = pipeline->handler(handler);
    if (!h) return 1;  // its creation error is logged
    if (!h->takes_snapshots())
      throw Error("handler \"" + handler +
                  "\": its plugin was built against plugin ABI 1.1, which has no Snapshot change sets; rebuild it "
                  "against 1.2 or later");
  } else {
    own_router = std::make_unique<route::Router>(cfg.routes);
  }
  const route::Router& router = pipeline ? pipeline->router() : *own_router;

  bool delivered = true;
  std::atomic<bool> stop{false};
  auto taken = take_snapshots(
      client, cfg, resources, router, {handler},
      [&](std::vector<model::ChangeSet>&& batch) {
        if (print) {
          for (const auto& cs : batch) std::cout << cs.to_json() << "\n";
          std::cout.flush();
        } else if (!pipeline->deliver_batch(std::move(batch))) {
          delivered = false;
        }
      },
      stop);
  if (pipeline && !pipeline->flush()) delivered = false;
  const auto& t = taken.front();
  if (print)
    spdlog::info("snapshot {}: {} object(s)", t.id, t.total);
  else
    spdlog::info("snapshot {}: {} object(s) for handler \"{}\", {} dead letter(s)", t.id, t.total, handler,
                 pipeline->stats().dead.load());
  return delivered ? 0 : 1;
}

}  // namespace kubetrail::cli
