// The diff engine: turns (old object from the cache, new object from a watch
// event) into a ChangeSet - a field-by-field semantic diff with its actor -
// or into nothing when only noise changed.
//
// Objects are pruned before they are cached (noise paths dropped, secrets
// redacted), so a status-only update is recognised by comparing bytes and
// plaintext secrets never stay in memory past the parse of their event.
//
// Not thread-safe: one ChangeDetector per informer (it owns parsers).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "diff/list_keys.hpp"
#include "diff/path.hpp"
#include "kube/object_store.hpp"
#include "kube/resource.hpp"
#include "kube/watch_stream.hpp"

namespace kubetrail::diff {

enum class ChangeType : uint32_t { added = 1, modified = 2, deleted = 3 };  // = kubetrail_change_type
enum class FieldOp : uint32_t { add = 1, remove = 2, replace = 3 };         // = kubetrail_field_op

std::string_view to_string(ChangeType t) noexcept;  // "Added", "Modified", "Deleted"
std::optional<ChangeType> parse_change_type(std::string_view s) noexcept;
std::string_view to_string(FieldOp op) noexcept;  // "add", "remove", "replace"

struct FieldChange {
  FieldOp op = FieldOp::replace;
  std::string path;      // see diff/path.hpp
  std::string old_json;  // minified JSON, "" for add
  std::string new_json;  // minified JSON, "" for remove
  bool operator==(const FieldChange&) const = default;
};

struct Actor {
  std::string manager;
  std::string operation;
  std::string time;
};

// Schema kubetrail.dev/v1 (DESIGN.md). Produced by ChangeDetector, read by
// routes, delivery and (as JSON and ABI views) plugins.
struct ChangeSet {
  ChangeType type = ChangeType::modified;
  std::string id;  // cluster/uid/resourceVersion
  std::string cluster;
  std::string observed_at;
  kube::ResourceType resource;
  std::string object_namespace;
  std::string name;
  std::string uid;
  std::string resource_version;
  std::optional<Actor> actor;
  std::string summary;
  std::vector<FieldChange> changes;  // Modified only
  std::string old_object;            // pruned+redacted JSON: Deleted, or Modified with include_objects
  std::string new_object;            // pruned+redacted JSON: Added, or Modified with include_objects
  bool catch_up = false;             // changed while kubetrail was not watching

  // The change set as schema v1 JSON text (compact).
  std::string to_json() const;
  // Back from to_json() (the durable outbox stores change sets as JSON).
  // Throws kubetrail::Error on text that is not a schema v1 change set.
  static ChangeSet from_json(std::string_view text);
};

// What to ignore and what to hide, from the [diff] config section.
struct DiffOptions {
  std::vector<std::string> ignore_paths;    // patterns, dropped for every resource
  std::vector<std::string> redact_paths;    // patterns, redacted for every resource
  std::vector<std::string> include_status;  // resources (plural, kind or plural.group) whose status is reported
  bool include_objects = false;             // carry old/new objects in Modified change sets
};

// Validates patterns in options; throws kubetrail::Error naming the bad one.
void validate(const DiffOptions& options);

// The structural diff of two JSON documents (both already pruned), with
// Kubernetes' merge keys for lists. Exposed for `kubetrail diff` and tests.
class DocumentDiffer {
 public:
  // `at`: the path of the two values when they are parts of larger
  // documents (the changes' paths start with it, and list keys see it).
  void diff(simdjson::dom::element old_doc, simdjson::dom::element new_doc, std::vector<FieldChange>& out,
            const ListKeys& keys = ListKeys::builtin_only(), std::span<const Segment> at = {});

 private:
  void diff_value(simdjson::dom::element a, simdjson::dom::element b, std::vector<FieldChange>& out);
  void diff_object(simdjson::dom::object a, simdjson::dom::object b, std::vector<FieldChange>& out);
  void diff_array(simdjson::dom::array a, simdjson::dom::array b, std::vector<FieldChange>& out);
  void emit(FieldOp op, const simdjson::dom::element* a, const simdjson::dom::element* b,
            std::vector<FieldChange>& out);
  std::vector<Segment> path_;
  std::vector<std::unique_ptr<std::string>> scratch_;  // owned texts of numeric list keys
  const ListKeys* keys_ = &ListKeys::builtin_only();
};

class ChangeDetector {
 public:
  ChangeDetector(std::string cluster, DiffOptions options);  // throws kubetrail::Error on bad patterns
  ~ChangeDetector();
  ChangeDetector(const ChangeDetector&) = delete;
  ChangeDetector& operator=(const ChangeDetector&) = delete;

  // Applies one ADDED / MODIFIED / DELETED event of `type` to `store` and
  // returns the change set it amounts to, or nullopt when nothing a user
  // cares about changed (noise, re-delivery). An error (the object lacks
  // metadata.name, say) leaves the store untouched.
  Result<std::optional<ChangeSet>> observe(kube::WatchEventType event, const kube::ResourceType& type,
                                           simdjson::dom::element object, kube::ObjectStore& store,
                                           std::string_view observed_at);

  // Stores an object that already existed when watching began (an initial
  // list): cached, never reported. An object without metadata.name is an error.
  Result<bool> seed(const kube::ResourceType& type, simdjson::dom::element object, kube::ObjectStore& store);

  // Removes a cached object that disappeared while nobody watched (found by
  // a relist at `list_rv`) and returns its Deleted change set, whose
  // resourceVersion (and id) is the list's: the deletion's own is unknown.
  // nullopt if not cached.
  std::optional<ChangeSet> forget(const kube::ResourceType& type, std::string_view store_key, kube::ObjectStore& store,
                                  std::string_view observed_at, std::string_view list_rv);

  // Prunes and redacts an object as the cache would store it.
  kube::StoredObject prune(const kube::ResourceType& type, simdjson::dom::element object);

  // Learns the keyed lists of a custom resource from its
  // CustomResourceDefinition object (apiextensions.k8s.io/v1 or v1beta1), so
  // that its lists declared x-kubernetes-list-type: map are diffed by key.
  // Returns false when the object is not a CRD with a schema.
  bool learn_crd(simdjson::dom::element crd);
  // Learns a kind's keyed lists from the server's OpenAPI v3 document of its
  // group-version (see ListKeys::learn_openapi). False: no schema for it.
  bool learn_openapi(const kube::ResourceType& type, simdjson::dom::element document);
  // The list keys used for a resource type.
  const ListKeys& list_keys(const kube::ResourceType& type);

  struct Stats {
    uint64_t events = 0;
    uint64_t change_sets = 0;
    uint64_t noise = 0;         // events with only ignored changes
    uint64_t redeliveries = 0;  // same resourceVersion as cached
  };
  const Stats& stats() const noexcept { return stats_; }

  // Modified events diff only the subtree where the old and new texts
  // differ (see Rules::changed_subtree). true: diff whole objects, as the
  // reference the fast path is tested against.
  void diff_whole_objects(bool whole) noexcept { whole_objects_ = whole; }

 private:
  class Rules;
  Rules& rules_for(const kube::ResourceType& type);

  std::string cluster_;
  DiffOptions options_;
  ListKeys& list_keys_for(std::string_view group, std::string_view kind);
  std::map<std::string, std::unique_ptr<Rules>, std::less<>> rules_;
  std::map<std::string, std::unique_ptr<ListKeys>, std::less<>> list_keys_;  // "group/Kind"
  simdjson::dom::parser old_parser_;
  simdjson::dom::parser new_parser_;
  DocumentDiffer differ_;
  Stats stats_;
  bool whole_objects_ = false;
};

// One human line: "Deployment shop/web: replicas 2 → 3; image of container
// web nginx:1.25 → nginx:1.27".
std::string summarize(const ChangeSet& cs);

// "<redacted sha256:1a2b3c4d>": a change stays visible, its value does not.
std::string redacted_marker(std::string_view value);

}  // namespace kubetrail::diff
