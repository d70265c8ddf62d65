// Which lists are merged by key, and by which key: lists Kubernetes merges by
// key are diffed by it (reordering is no change, inserting is one add) and
// addressed by it in paths (`containers[name=web]`).
//
// Two sources: the built-in types' keys (their `patchMergeKey` / `listMapKey`
// tags in k8s.io/api, published in the OpenAPI spec as
// x-kubernetes-patch-merge-key / x-kubernetes-list-map-keys), looked up by
// the list's field name; and, for custom resources, the
// `x-kubernetes-list-type: map` lists of their CRD's OpenAPI v3 schema,
// learned by path once the CRD is seen.
//
// Not thread-safe to learn while another thread looks up.
#pragma once

#include <simdjson.h>

#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/path.hpp"

namespace kubetrail::diff {

class ListKeys {
 public:
  // Candidate keys for the list at `path`, most preferred first; empty when
  // the list is not keyed (then it is diffed by index).
  std::span<const std::string_view> candidates(std::span<const model::Segment> path) const;

  // Learns the keyed lists of one OpenAPI v3 schema (a CRD version's
  // openAPIV3Schema). Lists declared `x-kubernetes-list-type: map` with
  // `x-kubernetes-list-map-keys` become keyed by those keys.
  void learn_schema(simdjson::dom::element openapi_v3_schema);
  // Learns the keyed lists of one kind from a server's OpenAPI v3 document
  // for its group-version (GET /openapi/v3/apis/GROUP/VERSION): the schema
  // whose x-kubernetes-group-version-kind names it, followed through $ref
  // and allOf. Lists with x-kubernetes-list-type: map are keyed by their
  // x-kubernetes-list-map-keys; others with x-kubernetes-patch-merge-key by
  // that key. This is how built-in kinds and CRDs get the server's own keys.
  // Returns false when the document has no schema for the kind.
  bool learn_openapi(simdjson::dom::element document, std::string_view group, std::string_view version,
                     std::string_view kind);

  // Built-in keys only: for every resource without a learned schema.
  static const ListKeys& builtin_only() {
    static const ListKeys none;
    return none;
  }

  // The built-in keys of a field name (exposed for tests and docs).
  static std::span<const std::string_view> builtin(std::string_view field);

 private:
  struct Learned {
    std::vector<std::string> keys;
    std::vector<std::string_view> views;  // into keys
  };
  // Schemas by "#/components/schemas/NAME", and the $refs being followed
  // (a schema may refer to itself: JSONSchemaProps does).
  // The walk is bounded whatever the document (issue 13: a 2.2 KB document
  // whose schemas each name the next twice in allOf took over 100 s): a
  // $ref already walked at the same path is not walked again, and the whole
  // walk stops after kWalkBudget steps (a real kind's schema takes a few
  // thousand; what was learned until then is kept).
  struct Refs {
    simdjson::dom::object components;
    std::vector<std::string_view> open;
    std::set<std::string, std::less<>> walked;  // "REF@schema path"
    size_t budget = 0;
  };
  size_t last_walk_steps_ = 0;

 public:
  static constexpr size_t kWalkBudget = 200000;
  // Steps the last learn_openapi() took (for tests: linear in the document).
  size_t last_walk_steps() const noexcept { return last_walk_steps_; }

 private:
  void walk(simdjson::dom::element schema, std::vector<model::Segment>& path, Refs* refs = nullptr);
  void learn(std::span<const model::Segment> path, std::vector<std::string> keys);
  std::map<std::string, Learned, std::less<>> by_path_;  // "spec.rules[*].ports" -> keys
};

// "spec.rules[3].ports" -> "spec.rules[*].ports": the path of a list in a
// schema, where every list element is the same.
std::string schema_path(std::span<const model::Segment> path);
void append_schema_path(std::span<const model::Segment> path, std::string& out);

}  // namespace kubetrail::diff
