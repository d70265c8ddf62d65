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
#include "diff/document_differ.hpp"
#include "diff/hollow_parse.hpp"
#include "diff/list_keys.hpp"
#include "diff/redaction.hpp"
#include "diff/source_text.hpp"
#include "model/change_set.hpp"
#include "model/diff_options.hpp"
#include "model/object_store.hpp"
#include "model/path.hpp"
#include "model/resource_type.hpp"
#include "model/watch_event.hpp"

namespace kubetrail::diff {

class Pruner;  // diff/pruner.hpp

// Validates patterns in options; throws kubetrail::Error naming the bad one.
void validate(const model::DiffOptions& options);

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

  // Parses the text of a watch event about an object of `type` into `parser`:
  // accepts and refuses what parser.parse() would, but leaves out of the DOM
  // the members of its object that pruning only copies or drops (a Pod's
  // spec and status: most of an event's stage 2, see diff/hollow_parse.hpp).
  // observe() then needs the whole index: SourceText::index = out.index.
  // `store`, when given, is the cache observe() will be given: a member
  // whose bytes are those the cached version copied is not checked again
  // (parse_hollowed's `previous`).
  void parse_event(const model::ResourceType& type, simdjson::dom::parser& parser, simdjson::padded_string_view text,
                   HollowParse& out, const model::ObjectStore* store = nullptr);

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

  // The object cached under `store_key`, as it is: a Snapshot change set
  // (inventory mode) with the object as `new`, the fields routes match on
  // and a summary; its id and snapshot info are the caller's to set (they
  // depend on the snapshot). nullopt when not cached.
  std::optional<model::ChangeSet> snapshot(const model::ResourceType& type, std::string_view store_key,
                                           const model::ObjectStore& store, std::string_view observed_at);

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
  // Prunes that pruned a whole parse because the hollowed one lost its
  // place in the source (Pruner::reparsed()): expected to stay 0.
  uint64_t reparsed() const noexcept;

  // Modified events diff only the subtree where the old and new texts
  // differ (see Pruner::changed_subtree). true: diff whole objects, as the
  // reference the fast path is tested against.
  void diff_whole_objects(bool whole) noexcept { whole_objects_ = whole; }

 private:
  Pruner& rules_for(const model::ResourceType& type);
  // A change set about a cached object (store key NAMESPACE/NAME): its
  // identity and version as cached; the caller adds the rest.
  model::ChangeSet of_cached(model::ChangeType change, const model::ResourceType& type, std::string_view store_key,
                             const model::StoredObject& cached, std::string_view observed_at) const;

  std::string cluster_;
  model::DiffOptions options_;
  ListKeys& list_keys_for(std::string_view group, std::string_view kind);
  std::map<std::string, std::unique_ptr<Pruner>, std::less<>> rules_;
  model::ResourceType last_type_;  // rules_for()'s last answer
  Pruner* last_rules_ = nullptr;
  std::map<std::string, std::unique_ptr<ListKeys>, std::less<>> list_keys_;  // "group/Kind"
  simdjson::dom::parser old_parser_;
  simdjson::dom::parser new_parser_;
  simdjson::dom::parser fields_parser_;  // reads ChangeSet::fields from a change set's pruned object
  DocumentDiffer differ_;
  std::vector<model::ManagerEntry> managers_;  // an event's managers, read into reused strings
  std::string key_;  // the event's cache key, reused: "namespace/name" is past std::string's inline buffer
  Stats stats_;
  bool whole_objects_ = false;
};

}  // namespace kubetrail::diff
