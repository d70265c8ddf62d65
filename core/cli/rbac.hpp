// `kubetrail rbac`: the least-privilege RBAC for a config - list and watch of
// exactly the resources [watch] resolves to through discovery, in the
// namespaces it watches, plus the one Lease when leader election is on.
#pragma once

#include <map>
#include <string>

#include "config/config.hpp"
#include "model/resource_type.hpp"

namespace kubetrail::cli {

struct RbacSubject {
  std::string namespace_name = "kubetrail";  // the ServiceAccount's namespace
  std::string service_account = "kubetrail";
};

// The manifests (YAML, documents separated by ---): the ServiceAccount, a
// ClusterRole and ClusterRoleBinding for what is watched across the cluster
// (every namespace, or a cluster-scoped resource), a Role and RoleBinding
// per namespace of [watch] namespaces for namespaced resources, and the
// Lease's Role when [leader_election] is enabled. `resolved`: what [watch]
// resources resolves to through discovery (watch::Watches::resolve); a
// `*.GROUP` entry is granted the whole group, so that resources appearing
// in it later are covered.
std::string rbac_manifests(const config::Config& cfg, const std::map<std::string, model::ResourceType>& resolved,
                           const RbacSubject& subject);

}  // namespace kubetrail::cli
