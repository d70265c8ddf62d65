// The per-event step of the watch stage, shared by `run` (one tracker per
// informer) and `replay` (one per resource of the recording): the cache of
// one resource and the change detector that turns each event into the
// change sets it amounts to, pairing objects by uid. What differs between
// the two is only where events come from (a watch, a list, a recording) and
// where change sets go.
//
// Not thread-safe: owned by one informer (or the replay loop).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "diff/diff.hpp"
#include "model/change_set.hpp"
#include "model/object_store.hpp"
#include "model/resource_type.hpp"
#include "model/watch_event.hpp"

namespace kubetrail::watch {

class Tracker {
 public:
  // `detector` outlives the tracker and may be shared by trackers of one
  // thread (replay); an informer has its own.
  Tracker(diff::ChangeDetector& detector, model::ResourceType type) : detector_(detector), type_(std::move(type)) {}

  // What one event amounted to. `replaced`: the cached object under the
  // event's namespace/name had another uid - it was deleted and the name
  // reused while nobody watched - so it is reported Deleted before the
  // event's own change set, which is then an Added (pair by uid, never by
  // name alone). `change`: the event's change set; nullopt when only noise
  // changed or it was a re-delivery. `error`: why the event itself could
  // not be handled (the object lacks metadata.name, say); the cache is as
  // it was for it, and a `replaced` found before is still reported.
  struct Applied {
    std::optional<model::ChangeSet> replaced;
    std::optional<model::ChangeSet> change;
    std::string error;
  };
  // An ADDED / MODIFIED / DELETED event, or (catch_up) an item of a list
  // compared with the cache: after a restart or a 410 Gone.
  Applied apply(model::WatchEventType type, simdjson::dom::element object, std::string_view observed_at,
                const diff::SourceText* source = nullptr, bool catch_up = false);
  // Parses a watch event's text (see ChangeDetector::parse_event).
  void parse_event(simdjson::dom::parser& parser, simdjson::padded_string_view text, diff::HollowParse& out) {
    detector_.parse_event(type_, parser, text, out, &store_);
  }
  // An object that existed when watching began (initial list): cached,
  // never reported.
  Result<bool> seed(simdjson::dom::element object, const diff::SourceText* source = nullptr) {
    return detector_.seed(type_, object, store_, source);
  }
  // A cached object a relist at `list_rv` no longer has: its Deleted change
  // set (catch-up), or nullopt when it was not cached.
  std::optional<model::ChangeSet> vanished(std::string_view key, std::string_view observed_at,
                                           std::string_view list_rv);
  // A DELETED event at `rv` whose object cannot be read (nested too deep):
  // the Deleted change set of what the cache has under `key` - the last
  // version that could be read - or nullopt when it has nothing.
  std::optional<model::ChangeSet> deleted_unread(std::string_view key, std::string_view observed_at,
                                                 std::string_view rv);

  model::ObjectStore& store() noexcept { return store_; }
  const model::ObjectStore& store() const noexcept { return store_; }
  const model::ResourceType& type() const noexcept { return type_; }

 private:
  diff::ChangeDetector& detector_;
  model::ResourceType type_;
  model::ObjectStore store_;
};

}  // namespace kubetrail::watch
