#include "cli/rbac.hpp"

#include <iostream>
#include <set>
#include <sstream>
#include <vector>

#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/error.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"

namespace kubetrail::cli {

namespace {

// One rule: list and watch of these resources of one API group.
struct Rule {
  std::string group;
  std::set<std::string> resources;
};

// Quoted for YAML: names of resources, groups and namespaces are plain
// DNS-like words, but "" (the core group) and "*" must be quoted.
std::string q(const std::string& s) { return "\"" + s + "\""; }

void put_rules(std::ostringstream& out, const std::map<std::string, Rule>& rules) {
  out << "rules:\n";
  for (const auto& [group, rule] : rules) {
    out << "  - apiGroups: [" << q(group) << "]\n    resources: [";
    const char* sep = "";
    for (const auto& r : rule.resources) out << sep << q(r), sep = ", ";
    out << "]\n    verbs: [\"list\", \"watch\"]\n";
  }
}

void put_binding(std::ostringstream& out, const char* kind, const char* role_kind, const std::string& name,
                 const std::string* ns, const RbacSubject& s) {
  out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: " << kind << "\nmetadata:\n  name: " << name << "\n";
  if (ns) out << "  namespace: " << *ns << "\n";
  out << "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: " << role_kind << "\n  name: " << name
      << "\nsubjects:\n  - kind: ServiceAccount\n    name: " << s.service_account
      << "\n    namespace: " << s.namespace_name << "\n";
}

}  // namespace

std::string rbac_manifests(const config::Config& cfg, const std::multimap<std::string, model::ResourceType>& resolved,
                           const RbacSubject& subject) {
  // Per group: what is watched across the cluster, and what only in the
  // watched namespaces.
  std::map<std::string, Rule> cluster, namespaced;
  std::set<std::string> whole_groups;  // from "*.GROUP" entries
  for (const auto& [name, type] : resolved)
    if (name.starts_with("*.")) whole_groups.insert(name.substr(2));
  const bool per_namespace = !cfg.watch.namespaces.empty();
  for (const auto& [name, type] : resolved) {
    bool whole = whole_groups.count(type.group) != 0;
    auto& into = (per_namespace && type.namespaced) ? namespaced : cluster;
    Rule& rule = into[type.group];
    rule.group = type.group;
    rule.resources.insert(whole ? "*" : type.resource);
  }
  for (auto* rules : {&cluster, &namespaced})
    for (auto& [group, rule] : *rules)
      if (rule.resources.count("*")) rule.resources = {"*"};
  std::ostringstream out;
  out << "# Least-privilege RBAC for " << cfg.source << ", made by `kubetrail rbac` from the server's discovery:\n"
      << "# list and watch of what [watch] resources names"
      << (per_namespace ? " in [watch] namespaces" : " across the cluster")
      << (cfg.leader_election.enabled ? ", and the leader-election Lease" : "") << ". Discovery itself\n"
      << "# (/api, /apis, /openapi/v3) is open to every authenticated client (system:discovery).\n";
  out << "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " << subject.service_account
      << "\n  namespace: " << subject.namespace_name << "\n";
  const std::string watch_name = subject.service_account + "-watch";
  if (!cluster.empty()) {
    out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " << watch_name
        << "\n";
    put_rules(out, cluster);
    put_binding(out, "ClusterRoleBinding", "ClusterRole", watch_name, nullptr, subject);
  }
  if (!namespaced.empty())
    for (const auto& ns : cfg.watch.namespaces) {
      out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: " << watch_name
          << "\n  namespace: " << ns << "\n";
      put_rules(out, namespaced);
      put_binding(out, "RoleBinding", "Role", watch_name, &ns, subject);
    }
  if (cfg.leader_election.enabled) {
    // create cannot be limited to a name (the object does not exist yet);
    // get and update can.
    const std::string name = subject.service_account + "-leader-election";
    const std::string& ns = cfg.leader_election.lease_namespace;
    out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: " << name
        << "\n  namespace: " << ns << "\nrules:\n"
        << "  - apiGroups: [\"coordination.k8s.io\"]\n    resources: [\"leases\"]\n    verbs: [\"create\"]\n"
        << "  - apiGroups: [\"coordination.k8s.io\"]\n    resources: [\"leases\"]\n    resourceNames: ["
        << q(cfg.leader_election.lease_name) << "]\n    verbs: [\"get\", \"update\"]\n";
    put_binding(out, "RoleBinding", "Role", name, &ns, subject);
  }
  return out.str();
}

int run_rbac(const Args& args) {
  config::Config cfg = load_config(args);
  setup_logging(cfg, args);
  if (cfg.watch.resources.empty()) throw Error(cfg.source + ": [watch] resources is empty: nothing to grant");
  kube::Connection conn = kube::resolve_connection(args.get("--kubeconfig", cfg.cluster.kubeconfig),
                                                   args.get("--context", cfg.cluster.context));
  kube::Client client(std::move(conn));
  kube::Discovery discovery = kube::Discovery::fetch(client);
  std::multimap<std::string, model::ResourceType> resolved;
  std::vector<std::string> unresolved;
  for (const auto& name : cfg.watch.resources) {
    if (name.starts_with("*.")) {
      // Every resource of the group, now and later (run watches what appears
      // in it on re-discovery): the whole group is granted, in the scopes
      // its resources have now - a Role's scope when none is served yet.
      const std::string group = name.substr(2);
      bool any = false;
      for (const auto& r : discovery.resources())
        if (r.type.group == group && r.watchable()) resolved.emplace(name, r.type), any = true;
      if (!any) resolved.emplace(name, model::ResourceType{group, "", "*", "", true});
      continue;
    }
    auto r = discovery.resolve(name);
    if (r.ok())
      resolved.emplace(name, r.value());
    else
      unresolved.push_back(r.error());
  }
  if (!unresolved.empty()) {
    std::string why = cfg.source + ": [watch] resources:";
    for (const auto& e : unresolved) why += "\n  " + e;
    throw Error(why);
  }
  RbacSubject subject;
  subject.namespace_name = args.get("--namespace", subject.namespace_name);
  subject.service_account = args.get("--service-account", subject.service_account);
  std::cout << rbac_manifests(cfg, resolved, subject);
  return 0;
}

}  // namespace kubetrail::cli
