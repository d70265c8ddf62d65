// What kind of Kubernetes object an event is about: the group/version/resource
// (REST path) and kind. Discovery fills these from the server; recorded
// streams without a server fall back to Kubernetes' own pluralisation rules.
#pragma once

#include <string>
#include <string_view>

namespace kubetrail::model {

struct ResourceType {
  std::string group;     // "" for the core group
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "deployments"
  std::string kind;      // "Deployment"
  bool namespaced = true;

  bool operator==(const ResourceType&) const = default;
  // "deployments.apps", or "pods" for the core group: how kubectl names it.
  std::string qualified_name() const { return group.empty() ? resource : resource + "." + group; }
  // Whether a name in the config means this type: its plural, plural.group,
  // its kind in any case ("deployments", "deployments.apps", "Deployment"),
  // or "*.GROUP" for every resource of its group ("*.apps").
  bool named_by(std::string_view name) const;
};

// Splits "apps/v1" into group "apps", version "v1"; "v1" into "", "v1".
void split_api_version(std::string_view api_version, std::string& group, std::string& version);

// The resource type for an apiVersion and kind when no discovery document is
// at hand (replay, `kubetrail diff`): well-known kinds from a table, others by
// the same English plural rules kube-apiserver's CRD defaulting uses.
ResourceType resource_type_for(std::string_view api_version, std::string_view kind);

}  // namespace kubetrail::model
