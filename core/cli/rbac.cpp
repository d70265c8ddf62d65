#include "cli/rbac.hpp"

#include <iostream>
#include <set>
#include <sstream>
#include <vector>

#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/error.hpp"
#include "common/json_writer.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"
#include "watch/watches.hpp"

namespace kubetrail::cli {

namespace {

// One rule: list and watch of these resources of one API group.
struct Rule {
  std::string group;
  std::set<std::string> resources;
};

// Every name quoted and escaped as a JSON string, which YAML reads as a
// double-quoted scalar: "" (the core group) and "*" need quotes, and a name
// from the config or the server is never taken as YAML syntax.
std::string q(std::string_view s) {
  std::string out;
  append_json_string(s, out);
  return out;
}

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
  out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: " << kind << "\nmetadata:\n  name: " << q(name) << "\n";
  if (ns) out << "  namespace: " << q(*ns) << "\n";
  out << "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: " << role_kind << "\n  name: " << q(name)
      << "\nsubjects:\n  - kind: ServiceAccount\n    name: " << q(s.service_account)
      << "\n    namespace: " << q(s.namespace_name) << "\n";
}

}  // namespace

std::string rbac_manifests(const config::Config& cfg, const std::map<std::string, model::ResourceType>& resolved,
                           const RbacSubject& subject) {
  // Per group: what is watched across the cluster, and what only in the
  // watched namespaces.
  std::map<std::string, Rule> cluster, namespaced;
  const bool per_namespace = !cfg.watch.namespaces.empty();
  // "*.GROUP": every resource of the group, now and later (run watches what
  // appears in it on re-discovery), so the whole group is granted, in the
  // scopes its resources have now - a Role's scope when none is served yet.
  std::set<std::string> whole_groups;
  for (const auto& name : cfg.watch.resources)
    if (name.starts_with("*.")) whole_groups.insert(name.substr(2));
  auto grant = [&](const std::string& group, bool namespaced_type, const std::string& resource) {
    Rule& rule = ((per_namespace && namespaced_type) ? namespaced : cluster)[group];
    rule.group = group;
    rule.resources.insert(whole_groups.count(group) ? "*" : resource);
  };
  for (const auto& [qualified, type] : resolved) grant(type.group, type.namespaced, type.resource);
  for (const auto& group : whole_groups)
    if (!cluster.count(group) && !namespaced.count(group)) grant(group, true, "*");
  for (auto* rules : {&cluster, &namespaced})
    for (auto& [group, rule] : *rules)
      if (rule.resources.count("*")) rule.resources = {"*"};
  std::ostringstream out;
  out << "# Least-privilege RBAC for " << cfg.source << ", made by `kubetrail rbac` from the server's discovery:\n"
      << "# list and watch of what [watch] resources names"
      << (per_namespace ? " in [watch] namespaces" : " across the cluster")
      << (cfg.leader_election.enabled ? ", and the leader-election Lease" : "") << ". Discovery itself\n"
      << "# (/api, /apis, /openapi/v3) is open to every authenticated client (system:discovery).\n";
  out << "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " << q(subject.service_account)
      << "\n  namespace: " << q(subject.namespace_name) << "\n";
  const std::string watch_name = subject.service_account + "-watch";
  if (!cluster.empty()) {
    out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " << q(watch_name)
        << "\n";
    put_rules(out, cluster);
    put_binding(out, "ClusterRoleBinding", "ClusterRole", watch_name, nullptr, subject);
  }
  if (!namespaced.empty())
    for (const auto& ns : cfg.watch.namespaces) {
      out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: " << q(watch_name)
          << "\n  namespace: " << q(ns) << "\n";
      put_rules(out, namespaced);
      put_binding(out, "RoleBinding", "Role", watch_name, &ns, subject);
    }
  if (cfg.leader_election.enabled) {
    // create cannot be limited to a name (the object does not exist yet);
    // get and update can.
    const std::string name = subject.service_account + "-leader-election";
    const std::string& ns = cfg.leader_election.lease_namespace;
    out << "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: " << q(name)
        << "\n  namespace: " << q(ns) << "\nrules:\n"
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
  auto resolved = resolve_watched(cfg, discovery);  // as run resolves them
  RbacSubject subject;
  subject.namespace_name = args.get("--namespace", subject.namespace_name);
  subject.service_account = args.get("--service-account", subject.service_account);
  std::cout << rbac_manifests(cfg, resolved, subject);
  return 0;
}

}  // namespace kubetrail::cli
