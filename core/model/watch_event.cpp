#include "model/watch_event.hpp"

namespace kubetrail::model {

std::string_view to_string(WatchEventType t) noexcept {
  switch (t) {
    case WatchEventType::added: return "ADDED";
    case WatchEventType::modified: return "MODIFIED";
    case WatchEventType::deleted: return "DELETED";
    case WatchEventType::bookmark: return "BOOKMARK";
    case WatchEventType::error: return "ERROR";
  }
  return "?";
}

std::optional<WatchEventType> parse_watch_event_type(std::string_view s) noexcept {
  if (s == "ADDED") return WatchEventType::added;
  if (s == "MODIFIED") return WatchEventType::modified;
  if (s == "DELETED") return WatchEventType::deleted;
  if (s == "BOOKMARK") return WatchEventType::bookmark;
  if (s == "ERROR") return WatchEventType::error;
  return std::nullopt;
}

}  // namespace kubetrail::model
