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

// The JSON text an object was parsed from, and the parser that parsed it
// (it still holds stage 1's index of every structural character of the
// text). With it the pruner copies untouched subtrees byte for byte instead
// of serializing them again - only where the copy is exactly what it would
// write (compact, no escapes, integers only), so a cached text never
// depends on which way it was made. Valid until the parser parses again.
struct SourceText {
  static constexpr uint32_t kFind = UINT32_MAX;
  const simdjson::dom::parser* parser = nullptr;
  std::string_view text;   // the bytes `parser` last parsed
  std::string_view field;  // "": the object is the document; else the document's field holding it
  uint32_t token = kFind;  // set by ListItemSources: where the object starts in the parser's index
};

// The SourceText of each object in a List response's "items", in order:
// an initial list or a relist is pruned by copying, like watch events.
// Call next() once per item, in the order the DOM iterates them.
class ListItemSources {
 public:
  ListItemSources(const simdjson::dom::parser& parser, std::string_view text);
  SourceText next();  // an empty SourceText once out of step (then the pruner serializes)

 private:
  SourceText source_;
  uint32_t next_ = SourceText::kFind;
};

// What to ignore and what to hide, from the [diff] config section.
struct DiffOptions {
  std::vector<std::string> ignore_paths;    // patterns, dropped for every resource
  std::vector<std::string> redact_paths;    // patterns, redacted for every resource
  std::vector<std::string> include_status;  // resources (plural, kind or plural.group) whose status is reported
  bool include_objects = false;             // carry old/new objects in Modified change sets
  // The key of the redaction markers' HMAC (bytes). Empty: a random key of
  // this ChangeDetector's own (markers stable within one process only). run
  // takes it from [diff] redaction_key_file/_env, else the state store.
  std::string redaction_key;
};

// Validates patterns in options; throws kubetrail::Error naming the bad one.
void validate(const DiffOptions& options);

// Where the containers of a pruned text were written, and which of them are
// provably the same bytes as in the text's previous version: the differ
// skips those without walking them (an image bump then walks one container's
// scalars, not every env var, port and mount of the Pod).
//
// The new text is the old text's first `prefix` bytes, then the differing
// bytes (the region, up to `suffix_from`), then the old text's last bytes.
// A container wholly before the region is the same value as the one the
// differ pairs it with, always: a parser reads identical bytes identically.
// A container wholly after it is too when `suffix_aligned` (the differing
// bytes hold no quote or backslash, so the suffix is not read as inside a
// string in one text and outside in the other) and it is paired by name or
// merge key (a list paired by index can pair it with a shifted neighbour).
// Then reading the texts backwards from their common end meets the same
// tokens at the same depths, up to the container's name. Assumes no object
// repeats a key, as the API server guarantees.
struct UnchangedBytes {
  struct Node {
    uint32_t begin = 0, end = 0;  // its bytes in the new text
    uint32_t key_begin = 0;       // where its "name": starts; = begin in a list
    uint32_t after = 0;           // index of the first node after its subtree
    int32_t parent = -1;
    uint32_t index = 0;    // position in the parent list, as written
    std::string_view key;  // name in the parent object
    bool in_list = false;
    bool copied = false;                // written unpruned: the same value as in the object pruned
    bool has_value = false;             // `value` is known (not inside a byte copy)
    simdjson::dom::element value = {};  // the object's value it was written from
  };
  std::span<const Node> nodes;
  int32_t root = -1;  // the node of the two values diffed
  uint32_t prefix = 0, suffix_from = 0;
  bool suffix_aligned = false;

  // The container child of `parent` named `key` / at `index`, or -1.
  int32_t child(int32_t parent, std::string_view key) const noexcept;
  int32_t child(int32_t parent, uint32_t index) const noexcept;
  // Whether node `n`, paired by name or merge key (or by index), is the
  // same bytes as its counterpart.
  bool same(int32_t n, bool paired_by_name) const noexcept {
    const Node& x = nodes[size_t(n)];
    return x.end <= prefix || (paired_by_name && suffix_aligned && x.key_begin >= suffix_from);
  }
};

// The structural diff of two JSON documents (both already pruned), with
// Kubernetes' merge keys for lists. Exposed for `kubetrail diff` and tests.
class DocumentDiffer {
 public:
  // `at`: the path of the two values when they are parts of larger
  // documents (the changes' paths start with it, and list keys see it).
  // `unchanged`: what the differ may skip, when the new value's text layout
  // is known (see UnchangedBytes).
  void diff(simdjson::dom::element old_doc, simdjson::dom::element new_doc, std::vector<FieldChange>& out,
            const ListKeys& keys = ListKeys::builtin_only(), std::span<const Segment> at = {},
            const UnchangedBytes* unchanged = nullptr);

 private:
  void diff_value(simdjson::dom::element a, simdjson::dom::element b, std::vector<FieldChange>& out);
  void diff_object(simdjson::dom::object a, simdjson::dom::object b, std::vector<FieldChange>& out);
  void diff_array(simdjson::dom::array a, simdjson::dom::array b, std::vector<FieldChange>& out);
  void emit(FieldOp op, const simdjson::dom::element* a, const simdjson::dom::element* b,
            std::vector<FieldChange>& out);
  std::vector<Segment> path_;
  template <class Id>
  void diff_child(simdjson::dom::element a, simdjson::dom::element b, Id id, bool paired_by_name,
                  std::vector<FieldChange>& out);
  std::vector<std::unique_ptr<std::string>> scratch_;  // owned texts of numeric list keys
  const ListKeys* keys_ = &ListKeys::builtin_only();
  const UnchangedBytes* unchanged_ = nullptr;
  int32_t node_ = -1;  // the unchanged_ node of the b value being walked; -1: unknown
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
  // `source`, when given, is the text `object` was parsed from (faster).
  Result<std::optional<ChangeSet>> observe(kube::WatchEventType event, const kube::ResourceType& type,
                                           simdjson::dom::element object, kube::ObjectStore& store,
                                           std::string_view observed_at, const SourceText* source = nullptr);

  // Stores an object that already existed when watching began (an initial
  // list): cached, never reported. An object without metadata.name is an error.
  Result<bool> seed(const kube::ResourceType& type, simdjson::dom::element object, kube::ObjectStore& store,
                    const SourceText* source = nullptr);

  // Removes a cached object that disappeared while nobody watched (found by
  // a relist at `list_rv`) and returns its Deleted change set, whose
  // resourceVersion (and id) is the list's: the deletion's own is unknown.
  // nullopt if not cached.
  std::optional<ChangeSet> forget(const kube::ResourceType& type, std::string_view store_key, kube::ObjectStore& store,
                                  std::string_view observed_at, std::string_view list_rv);

  // When the cached object at `object`'s namespace/name has another uid (it
  // was deleted and the name reused while nobody watched, or between two
  // list pages), removes it and returns its Deleted change set; observe()
  // of `object` then reports the new one as Added. Objects are paired by
  // uid, never by name alone. nullopt when there is nothing to replace.
  std::optional<ChangeSet> replaced(const kube::ResourceType& type, simdjson::dom::element object,
                                    kube::ObjectStore& store, std::string_view observed_at);

  // Prunes and redacts an object as the cache would store it.
  kube::StoredObject prune(const kube::ResourceType& type, simdjson::dom::element object,
                           const SourceText* source = nullptr);

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
  kube::ResourceType last_type_;  // rules_for()'s last answer
  Rules* last_rules_ = nullptr;
  std::map<std::string, std::unique_ptr<ListKeys>, std::less<>> list_keys_;  // "group/Kind"
  simdjson::dom::parser old_parser_;
  simdjson::dom::parser new_parser_;
  DocumentDiffer differ_;
  std::vector<kube::ManagerEntry> managers_;  // a modified object's new managers, swapped into the cache
  Stats stats_;
  bool whole_objects_ = false;
};

// A change set's id, the same however often the same transition is computed
// (a watch event, a relist after 410, the catch-up after a restart), so that
// the outbox and receivers can drop repeats:
//   Added, Modified: CLUSTER/UID/RESOURCEVERSION (the version it changed to)
//   Deleted:         CLUSTER/UID/deleted (an object is deleted once)
// An object without a uid (hand-written manifests) gets
// CLUSTER/NAMESPACE/NAME/RESOURCEVERSION.
std::string change_set_id(std::string_view cluster, ChangeType type, std::string_view uid, std::string_view ns,
                          std::string_view name, std::string_view resource_version);

// One human line: "Deployment shop/web: replicas 2 → 3; image of container
// web nginx:1.25 → nginx:1.27".
std::string summarize(const ChangeSet& cs);

// "<redacted hmac:1a2b3c4d>": the first 32 bits of HMAC-SHA-256(key, value).
// A change stays visible (another value, another marker) while a guessed
// value cannot be checked against it without the key (an unsalted hash
// could: sha256 of "aHVudGVyMg==" confirmed "hunter2").
std::string redacted_marker(std::string_view key, std::string_view value);
// 32 random bytes, for a key nobody configured.
std::string random_redaction_key();

}  // namespace kubetrail::diff
