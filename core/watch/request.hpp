// Where an informer or a snapshot asks for a resource: the collection's
// path with the scope of [watch] (namespace, label and field selectors, and
// the namespaces excluded, sent as a field selector so that the server
// filters them), one function for both so that a snapshot lists exactly
// what the informers watch.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/resource_type.hpp"

namespace kubetrail::watch {

struct ListScope {
  std::string namespace_scope;  // "" = all namespaces
  std::vector<std::string> exclude_namespaces;
  std::string label_selector;
  std::string field_selector;
};

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string url_escape(std::string_view s);

// [watch] field_selector plus metadata.namespace!=NS for each namespace
// excluded (a cluster-wide request of a namespaced resource only).
std::string field_selector(const model::ResourceType& type, const ListScope& scope);

// "/apis/GROUP/VERSION[/namespaces/NS]/RESOURCE?[labelSelector=...&][fieldSelector=...&]":
// the caller appends its own parameters (limit=..., watch=1&...).
std::string collection_path(const model::ResourceType& type, const ListScope& scope);

// Whether an object of namespace `ns` is excluded (for a server that
// ignores the field selector).
bool excluded(const ListScope& scope, std::string_view ns);

}  // namespace kubetrail::watch
