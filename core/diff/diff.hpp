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
#include "model/change_set.hpp"
#include "model/diff_options.hpp"
#include "model/object_store.hpp"
#include "model/path.hpp"
#include "model/resource_type.hpp"
#include "model/watch_event.hpp"

namespace kubetrail::diff {

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

// Validates patterns in options; throws kubetrail::Error naming the bad one.
void validate(const model::DiffOptions& options);

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
  void diff(simdjson::dom::element old_doc, simdjson::dom::element new_doc, std::vector<model::FieldChange>& out,
            const ListKeys& keys = ListKeys::builtin_only(), std::span<const model::Segment> at = {},
            const UnchangedBytes* unchanged = nullptr);

 private:
  void diff_value(simdjson::dom::element a, simdjson::dom::element b, std::vector<model::FieldChange>& out);
  void diff_object(simdjson::dom::object a, simdjson::dom::object b, std::vector<model::FieldChange>& out);
  void diff_array(simdjson::dom::array a, simdjson::dom::array b, std::vector<model::FieldChange>& out);
  void emit(model::FieldOp op, const simdjson::dom::element* a, const simdjson::dom::element* b,
            std::vector<model::FieldChange>& out);
  std::vector<model::Segment> path_;
  template <class Id>
  void diff_child(simdjson::dom::element a, simdjson::dom::element b, Id id, bool paired_by_name,
                  std::vector<model::FieldChange>& out);
  std::vector<std::unique_ptr<std::string>> scratch_;  // owned texts of numeric list keys
  const ListKeys* keys_ = &ListKeys::builtin_only();
  const UnchangedBytes* unchanged_ = nullptr;
  int32_t node_ = -1;  // the unchanged_ node of the b value being walked; -1: unknown
};

class ChangeDetector {
 public:
  ChangeDetector(std::string cluster, model::DiffOptions options);  // throws kubetrail::Error on bad patterns
  ~ChangeDetector();
  ChangeDetector(const ChangeDetector&) = delete;
  ChangeDetector& operator=(const ChangeDetector&) = delete;

  // Applies one ADDED / MODIFIED / DELETED event of `type` to `store` and
  // returns the change set it amounts to, or nullopt when nothing a user
  // cares about changed (noise, re-delivery). An error (the object lacks
  // metadata.name, say) leaves the store untouched.
  // `source`, when given, is the text `object` was parsed from (faster).
  Result<std::optional<model::ChangeSet>> observe(model::WatchEventType event, const model::ResourceType& type,
                                                  simdjson::dom::element object, model::ObjectStore& store,
                                                  std::string_view observed_at, const SourceText* source = nullptr);

  // Stores an object that already existed when watching began (an initial
  // list): cached, never reported. An object without metadata.name is an error.
  Result<bool> seed(const model::ResourceType& type, simdjson::dom::element object, model::ObjectStore& store,
                    const SourceText* source = nullptr);

  // Removes a cached object that disappeared while nobody watched (found by
  // a relist at `list_rv`) and returns its Deleted change set, whose
  // resourceVersion (and id) is the list's: the deletion's own is unknown.
  // nullopt if not cached.
  std::optional<model::ChangeSet> forget(const model::ResourceType& type, std::string_view store_key,
                                         model::ObjectStore& store, std::string_view observed_at,
                                         std::string_view list_rv);

  // When the cached object at `object`'s namespace/name has another uid (it
  // was deleted and the name reused while nobody watched, or between two
  // list pages), removes it and returns its Deleted change set; observe()
  // of `object` then reports the new one as Added. Objects are paired by
  // uid, never by name alone. nullopt when there is nothing to replace.
  std::optional<model::ChangeSet> replaced(const model::ResourceType& type, simdjson::dom::element object,
                                           model::ObjectStore& store, std::string_view observed_at);

  // Prunes and redacts an object as the cache would store it.
  model::StoredObject prune(const model::ResourceType& type, simdjson::dom::element object,
                            const SourceText* source = nullptr);

  // Learns the keyed lists of a custom resource from its
  // CustomResourceDefinition object (apiextensions.k8s.io/v1 or v1beta1), so
  // that its lists declared x-kubernetes-list-type: map are diffed by key.
  // Returns false when the object is not a CRD with a schema.
  bool learn_crd(simdjson::dom::element crd);
  // Learns a kind's keyed lists from the server's OpenAPI v3 document of its
  // group-version (see ListKeys::learn_openapi). False: no schema for it.
  bool learn_openapi(const model::ResourceType& type, simdjson::dom::element document);
  // The list keys used for a resource type.
  const ListKeys& list_keys(const model::ResourceType& type);

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
  Rules& rules_for(const model::ResourceType& type);

  std::string cluster_;
  model::DiffOptions options_;
  ListKeys& list_keys_for(std::string_view group, std::string_view kind);
  std::map<std::string, std::unique_ptr<Rules>, std::less<>> rules_;
  model::ResourceType last_type_;  // rules_for()'s last answer
  Rules* last_rules_ = nullptr;
  std::map<std::string, std::unique_ptr<ListKeys>, std::less<>> list_keys_;  // "group/Kind"
  simdjson::dom::parser old_parser_;
  simdjson::dom::parser new_parser_;
  DocumentDiffer differ_;
  std::vector<model::ManagerEntry> managers_;  // a modified object's new managers, swapped into the cache
  Stats stats_;
  bool whole_objects_ = false;
};

// "<redacted hmac:1a2b3c4d>": the first 32 bits of HMAC-SHA-256(key, value).
// A change stays visible (another value, another marker) while a guessed
// value cannot be checked against it without the key (an unsalted hash
// could: sha256 of "aHVudGVyMg==" confirmed "hunter2").
std::string redacted_marker(std::string_view key, std::string_view value);
// 32 random bytes, for a key nobody configured.
std::string random_redaction_key();

}  // namespace kubetrail::diff
