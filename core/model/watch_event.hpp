// The type of one event of a Kubernetes watch stream, as the API server
// names it: what the watch stage hands the change detector with each object.
#pragma once

#include <optional>
#include <string_view>

namespace kubetrail::model {

enum class WatchEventType { added, modified, deleted, bookmark, error };

std::string_view to_string(WatchEventType t) noexcept;  // "ADDED", ...
std::optional<WatchEventType> parse_watch_event_type(std::string_view s) noexcept;

}  // namespace kubetrail::model
