// Who made a change: read from the object's managedFields, never guessed.
#pragma once

#include <simdjson.h>

#include <optional>
#include <vector>

#include "model/change_set.hpp"
#include "model/object_store.hpp"

namespace kubetrail::diff {

// Reads metadata.managedFields into `out`, reusing its strings' storage (a
// status-only update rewrites them in place, without allocating).
void extract_managers(simdjson::dom::element object, std::vector<model::ManagerEntry>& out);

// The actor: the manager whose managedFields entry moved with this event:
// an entry that is new, or whose time is newer than before. (An entry can
// lack a time: the scale subresource writes none in v1.24; a new one still
// counts.) When several moved (a controller and a user in the same second),
// the one whose fieldsV1 holds a changed path wins; then the newest, with
// status-subresource entries last, since status churn is not what a change
// set reports by default. Never guessed: absent when no entry moved.
std::optional<model::Actor> find_actor(const std::vector<model::ManagerEntry>* before,
                                       const std::vector<model::ManagerEntry>& after,
                                       simdjson::dom::element object = {},
                                       const std::vector<model::FieldChange>* changes = nullptr);

}  // namespace kubetrail::diff
