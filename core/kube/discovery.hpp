// API discovery: which resources the server serves (built-in and CRDs), and
// resolution of the names users write in [watch] resources - plural,
// singular, kind, short name, or plural.group - to a group/version/resource.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "kube/client.hpp"
#include "kube/resource.hpp"

namespace kubetrail::kube {

struct ApiResource {
  ResourceType type;
  std::string singular;
  std::vector<std::string> short_names;
  std::vector<std::string> verbs;
  bool watchable() const;
};

class Discovery {
 public:
  // Reads /api and /apis asking for aggregated discovery (two requests for
  // the whole catalogue); from a server that answers with the legacy
  // documents, also each group's preferred version. Throws kubetrail::Error
  // naming the server, the path and the server's answer (401 included).
  static Discovery fetch(Client& client);
  // Whether the server answered with aggregated discovery.
  bool aggregated() const noexcept { return aggregated_; }

  // Resolves a [watch] resources entry. The error lists close matches.
  Result<ResourceType> resolve(std::string_view name) const;
  const std::vector<ApiResource>& resources() const noexcept { return resources_; }

  // Builds a catalogue from given resources (tests).
  explicit Discovery(std::vector<ApiResource> resources) : resources_(std::move(resources)) {}

 private:
  Discovery() = default;
  std::vector<ApiResource> resources_;  // core first, then groups in server order
  bool aggregated_ = false;
};

// The server's OpenAPI v3 document for a resource's group-version
// (/openapi/v3, then the path it names), for list keys. "" when the server
// does not publish one (the built-in key table is used then); never throws.
std::string fetch_openapi_v3(Client& client, const ResourceType& type);

// The text of a failed API call, for messages: "HTTP 401 Unauthorized: <message>".
std::string describe_failure(const Client::Response& r);

}  // namespace kubetrail::kube
