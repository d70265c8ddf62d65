// The change set: what one change of one object amounts to, as it flows
// from the change detector through routes and delivery to plugins (as JSON
// and as ABI views). Schema kubetrail.dev/v1; docs/CHANGESETS.md says how
// every field, and the id, is formed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/resource_type.hpp"

namespace kubetrail::model {

// = kubetrail_change_type. `snapshot`: not a change but an object as it is,
// one item of a handler's periodic inventory (its `inventory_every`).
enum class ChangeType : uint32_t { added = 1, modified = 2, deleted = 3, snapshot = 4 };
enum class FieldOp : uint32_t { add = 1, remove = 2, replace = 3 };  // = kubetrail_field_op

std::string_view to_string(ChangeType t) noexcept;  // "Added", "Modified", "Deleted", "Snapshot"
std::optional<ChangeType> parse_change_type(std::string_view s) noexcept;
std::string_view to_string(FieldOp op) noexcept;  // "add", "remove", "replace"

struct FieldChange {
  FieldOp op = FieldOp::replace;
  std::string path;      // see model/path.hpp
  std::string old_json;  // minified JSON, "" for add
  std::string new_json;  // minified JSON, "" for remove
  bool operator==(const FieldChange&) const = default;
};

// Where a Snapshot change set belongs: one snapshot is every object routed
// to one handler at one time, numbered 1..total so that a receiver (a CMDB)
// knows when it holds all of it and may drop what the snapshot lacks.
struct SnapshotInfo {
  std::string id;       // HANDLER/STARTED_AT (RFC 3339), or STARTED_AT without a handler
  std::string handler;  // the handler it was taken for; "" when printed by `kubetrail snapshot`
  uint64_t index = 0;   // 1-based place of this object in the snapshot
  uint64_t total = 0;   // objects in the snapshot
  bool operator==(const SnapshotInfo&) const = default;
};

struct Actor {
  std::string manager;
  std::string operation;
  std::string time;
};

// Schema kubetrail.dev/v1 (docs/CHANGESETS.md). Produced by ChangeDetector, read by
// routes, delivery and (as JSON and ABI views) plugins.
struct ChangeSet {
  ChangeType type = ChangeType::modified;
  std::string id;  // cluster/uid/resourceVersion
  std::string cluster;
  std::string observed_at;
  ResourceType resource;
  std::string object_namespace;
  std::string name;
  std::string uid;
  std::string resource_version;
  std::optional<Actor> actor;
  std::string summary;
  std::vector<FieldChange> changes;      // Modified only
  std::string old_object;                // pruned+redacted JSON: Deleted, or Modified with include_objects
  std::string new_object;                // pruned+redacted JSON: Added, or Modified with include_objects
  bool catch_up = false;                 // changed while kubetrail was not watching
  std::optional<SnapshotInfo> snapshot;  // Snapshot only
  // Values of the object's fields that a route's `match.where` names
  // (dotted path -> the value as text: a string as it is, a number or bool
  // as JSON), read from the object when the change set was made: a Modified
  // change set carries no object, and routing runs again from the journal.
  std::vector<std::pair<std::string, std::string>> fields;

  // The change set as schema v1 JSON text (compact).
  std::string to_json() const;

  // to_json(), made once and shared: the journal, delivery (the outbox and
  // every plugin) and the history each need the same 17 KB for a Pod with
  // its objects, on three threads, and each made it again (perf, 100k pods,
  // state on: a tenth of the routing and the history threads). render()
  // makes it where the change set was found, json() reads it ("" when not
  // made), rendering() shares it or makes it. Whoever changes a rendered
  // change set clears `rendered` (delivery checks it against to_json() in
  // debug builds).
  //
  // *rendered is the JSON followed by kJsonPadding zero bytes (part of the
  // string): the plugin ABI's promise of readable zero bytes after the
  // text, kept without a copy into a padded buffer of its own.
  static constexpr size_t kJsonPadding = 1 + 64;
  std::shared_ptr<const std::string> rendered;
  void render() {
    if (!rendered) rendered = rendering();
  }
  // The JSON of a rendering: all but its padding.
  static std::string_view text_of(const std::string& rendering) {
    return std::string_view(rendering).substr(0, rendering.size() - kJsonPadding);
  }
  // The JSON in `rendered`; "" when it is not there.
  std::string_view json() const { return rendered ? text_of(*rendered) : std::string_view(); }
  // `rendered`, or a new rendering when there is none.
  std::shared_ptr<const std::string> rendering() const;
  // The same through nlohmann, replacing text that is not UTF-8 (to_json()
  // falls back to it; tests compare the two).
  std::string to_json_checked() const;
  // Back from to_json() (the durable outbox stores change sets as JSON).
  // Throws kubetrail::Error on text that is not a schema v1 change set.
  static ChangeSet from_json(std::string_view text);
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
// A Snapshot change set's id: CLUSTER/UID/snapshot/SNAPSHOT_ID (no uid:
// CLUSTER/NAMESPACE/NAME/snapshot/SNAPSHOT_ID). One per object and snapshot:
// the next snapshot's items are not redeliveries of this one's, and a
// snapshot item is never mistaken for a change.
std::string snapshot_item_id(std::string_view cluster, std::string_view uid, std::string_view ns, std::string_view name,
                             std::string_view snapshot_id);

// One human line: "Deployment shop/web: replicas 2 → 3; image of container
// web nginx:1.25 → nginx:1.27".
std::string summarize(const ChangeSet& cs);

}  // namespace kubetrail::model
