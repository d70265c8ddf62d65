// API discovery: which resources the server serves (built-in and CRDs), and
// resolution of the names users write in [watch] resources - plural,
// singular, kind, short name, or plural.group - to a group/version/resource.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "kube/client.hpp"
#include "model/resource_type.hpp"

namespace kubetrail::kube {

struct ApiResource {
  model::ResourceType type;
  std::string singular;
  std::vector<std::string> short_names;
  std::vector<std::string> verbs;
  bool watchable() const;
};

// The API server could not be asked (no connection, a timeout, 429 or a
// 5xx): worth trying again, unlike a refusal (401, 403) or a wrong answer.
class Unavailable : public Error {
 public:
  using Error::Error;
};

class Discovery {
 public:
  // Reads /api and /apis asking for aggregated discovery (two requests for
  // the whole catalogue); from a server that answers with the legacy
  // documents, also each group's preferred version. Throws kubetrail::Error
  // naming the server, the path and the server's answer (401 included).
  static Discovery fetch(Client& client);

  // Resolves a [watch] resources entry. The error lists close matches.
  Result<model::ResourceType> resolve(std::string_view name) const;
  const std::vector<ApiResource>& resources() const noexcept { return resources_; }

  // Builds a catalogue from given resources (tests).
  explicit Discovery(std::vector<ApiResource> resources) : resources_(std::move(resources)) {}

 private:
  Discovery() = default;
  std::vector<ApiResource> resources_;  // core first, then groups in server order
};

// The server's OpenAPI v3 documents, for list keys: the index
// (/openapi/v3) read once, each group-version's document (the path the index
// names) read once and shared by every resource of that group-version - the
// core/v1 document alone is megabytes. Empty when the server does not
// publish one (the built-in key table is used then); never throws.
class OpenApiDocuments {
 public:
  explicit OpenApiDocuments(Client& client) : client_(client) {}
  std::shared_ptr<const std::string> for_type(const model::ResourceType& type);

 private:
  Client& client_;
  std::optional<Client::Response> index_;
  std::map<std::string, std::shared_ptr<const std::string>> by_group_version_;
};

// The text of a failed API call, for messages: "HTTP 401 Unauthorized: <message>".
std::string describe_failure(const Client::Response& r);

}  // namespace kubetrail::kube
