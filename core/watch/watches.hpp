// The informers of `kubetrail run`, per resource: started, stopped and
// replaced when discovery or [watch] resources change - at start-up, on
// SIGHUP, and on periodic re-discovery ([watch] rediscover_s), so that a CRD
// installed while kubetrail runs is watched without a restart.
//
// [watch] resources entries are names (plural, singular, kind, short name,
// plural.group) or "*.GROUP": every listable, watchable resource of that API
// group, as discovery finds it now and later.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "kube/discovery.hpp"
#include "watch/informer.hpp"

namespace kubetrail::watch {

class Watches {
 public:
  using Sink = std::function<void(std::vector<model::ChangeSet>&&)>;  // Checkpoint::Sink
  // `cfg` (the start-up config: namespaces, selectors, cluster, diff) must
  // outlive this object; so must the client, state and metrics.
  Watches(kube::Client& client, const config::Config& cfg, state::StateStore* state, Metrics* metrics, Sink sink);
  ~Watches();
  Watches(const Watches&) = delete;
  Watches& operator=(const Watches&) = delete;

  // Resolves `resources` against `discovery`: what resolves and is not
  // watched yet gets informers (started at once), what no longer resolves
  // or is no longer named is stopped, and a resource whose preferred version
  // changed is watched at the new one. Returns one message per name that
  // does not resolve (with close matches); patterns that match nothing are
  // not errors. A resource served since the previous call (a CRD installed
  // meanwhile) reports the objects it already holds as Added (catchUp): they
  // were created while kubetrail ran. One that was served before but not
  // watched (newly named on reload) starts silently, like start-up.
  std::vector<std::string> reconcile(const kube::Discovery& discovery, const std::vector<std::string>& resources);
  // The resolution reconcile() uses: resource types by qualified name, and
  // a message per name that does not resolve.
  static std::map<std::string, model::ResourceType> resolve(const kube::Discovery& discovery,
                                                            const std::vector<std::string>& resources,
                                                            std::vector<std::string>& errors);
  void stop_all();

  // What is watched now, by qualified name (inventory lists the same).
  std::map<std::string, model::ResourceType> watched() const;
  // Probes and metrics.
  size_t informer_count() const;
  size_t synced_count() const;
  // The informers whose initial list is not done, each with how far it is
  // ("pods (41500 objects so far)"), comma-separated; "" when all are synced.
  std::string unsynced() const;
  // The informer silent longer than `stall` after its sync, or "".
  std::string first_silent(std::chrono::steady_clock::duration stall) const;

 private:
  struct Watched;
  void start(const model::ResourceType& type, bool report_existing, std::shared_ptr<const std::string> openapi);

  kube::Client& client_;
  const config::Config& cfg_;
  state::StateStore* state_;
  Metrics* metrics_;
  Sink sink_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Watched>> by_resource_;  // by qualified name
  // What the last discovery served (qualified names): a resource served now
  // and not then is new, and so is everything in it.
  std::set<std::string> served_;
  bool first_ = true;
};

}  // namespace kubetrail::watch
