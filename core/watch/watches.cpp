#include "watch/watches.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/thread_name.hpp"

namespace kubetrail::watch {

struct Watches::Watched {
  model::ResourceType type;
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<watch::Informer>> informers;  // one per namespace scope
  std::vector<std::thread> threads;

  void halt() {
    stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
  }
};

Watches::Watches(kube::Client& client, const config::Config& cfg, state::StateStore* state, Metrics* metrics, Sink sink)
    : client_(client), cfg_(cfg), state_(state), metrics_(metrics), sink_(std::move(sink)) {}

Watches::~Watches() { stop_all(); }

void Watches::start(const model::ResourceType& type, bool report_existing, std::shared_ptr<const std::string> openapi) {
  auto w = std::make_unique<Watched>();
  w->type = type;
  std::vector<std::string> scopes{""};
  if (type.namespaced && !cfg_.watch.namespaces.empty()) scopes = cfg_.watch.namespaces;
  for (const auto& ns : scopes) {
    watch::InformerOptions opt;
    opt.type = type;
    opt.namespace_scope = ns;
    opt.exclude_namespaces = cfg_.watch.exclude_namespaces;
    opt.label_selector = cfg_.watch.label_selector;
    opt.field_selector = cfg_.watch.field_selector;
    opt.state = state_;
    opt.metrics = metrics_;
    opt.report_existing = report_existing;
    opt.openapi_v3 = openapi;
    w->informers.push_back(std::make_unique<watch::Informer>(client_, opt, cfg_.cluster.name, cfg_.diff, sink_));
  }
  for (auto& inf : w->informers)
    w->threads.emplace_back([i = inf.get(), stop = &w->stop] {
      name_this_thread("kt-w:" + i->name());
      i->run(*stop);
    });
  by_resource_[type.qualified_name()] = std::move(w);
}

std::map<std::string, model::ResourceType> Watches::resolve(const kube::Discovery& discovery,
                                                            const std::vector<std::string>& resources,
                                                            std::vector<std::string>& errors) {
  std::map<std::string, model::ResourceType> want;
  for (const auto& name : resources) {
    if (name.starts_with("*.")) {
      std::string group = name.substr(2);
      for (const auto& r : discovery.resources())
        if (r.type.group == group && r.watchable()) want.emplace(r.type.qualified_name(), r.type);
      continue;
    }
    auto t = discovery.resolve(name);
    if (t)
      want.emplace(t.value().qualified_name(), t.value());
    else
      errors.push_back(t.error());
  }
  return want;
}

std::vector<std::string> Watches::reconcile(const kube::Discovery& discovery,
                                            const std::vector<std::string>& resources) {
  std::vector<std::string> errors;
  auto want = resolve(discovery, resources, errors);
  // Stop first (outside the lock: joining takes up to a second), then start.
  std::vector<std::unique_ptr<Watched>> retired;
  {
    std::lock_guard lock(mu_);
    for (auto it = by_resource_.begin(); it != by_resource_.end();) {
      auto w = want.find(it->first);
      if (w != want.end() && w->second == it->second->type) {
        ++it;
        continue;
      }
      spdlog::info("{}: {}", it->first,
                   w == want.end() ? "no longer watched (not in [watch] resources, or not served any more)"
                                   : "served at " + w->second.version + " now: watching that version");
      retired.push_back(std::move(it->second));
      it = by_resource_.erase(it);
    }
  }
  for (auto& w : retired) w->halt();
  // Under the lock, so that /readyz never sees a moment with no informers;
  // each group-version's schema is read once for all its resources.
  kube::OpenApiDocuments openapi(client_);
  std::lock_guard lock(mu_);
  for (const auto& [qualified, type] : want)
    if (!by_resource_.count(qualified)) {
      bool new_resource = !first_ && !served_.count(qualified);
      if (!first_) spdlog::info("{}: now watched{}", qualified, new_resource ? " (newly served)" : "");
      start(type, new_resource, openapi.for_type(type));
    }
  served_.clear();
  for (const auto& r : discovery.resources()) served_.insert(r.type.qualified_name());
  first_ = false;
  return errors;
}

void Watches::stop_all() {
  std::map<std::string, std::unique_ptr<Watched>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(by_resource_);
  }
  for (auto& [name, w] : all) w->stop = true;  // all at once, then wait
  for (auto& [name, w] : all) w->halt();
}

std::map<std::string, model::ResourceType> Watches::watched() const {
  std::lock_guard lock(mu_);
  std::map<std::string, model::ResourceType> out;
  for (const auto& [name, w] : by_resource_) out.emplace(name, w->type);
  return out;
}

size_t Watches::informer_count() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [name, w] : by_resource_) n += w->informers.size();
  return n;
}

size_t Watches::synced_count() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [name, w] : by_resource_)
    n += static_cast<size_t>(
        std::count_if(w->informers.begin(), w->informers.end(), [](auto& i) { return i->synced(); }));
  return n;
}

std::string Watches::unsynced() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, w] : by_resource_)
    for (const auto& i : w->informers)
      if (!i->synced())
        out += (out.empty() ? "" : ", ") + i->name() + " (" + std::to_string(i->listing()) + " objects so far)";
  return out;
}

std::string Watches::first_silent(std::chrono::steady_clock::duration stall) const {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  for (const auto& [name, w] : by_resource_)
    for (const auto& i : w->informers)
      if (i->synced() && now - i->last_heard() > stall)
        return "watch of " + i->name() + " silent for " +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - i->last_heard()).count()) +
               " s (no event, no bookmark; stall timeout " +
               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(stall).count()) + " s)";
  return {};
}

}  // namespace kubetrail::watch
