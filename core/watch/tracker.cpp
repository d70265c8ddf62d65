#include "watch/tracker.hpp"

namespace kubetrail::watch {

Tracker::Applied Tracker::apply(model::WatchEventType type, simdjson::dom::element object, std::string_view observed_at,
                                const diff::SourceText* source, bool catch_up) {
  Applied out;
  out.replaced = detector_.replaced(type_, object, store_, observed_at);
  if (auto cs = detector_.observe(type, type_, object, store_, observed_at, source))
    out.change = std::move(cs.value());
  else
    out.error = cs.error();
  if (catch_up) {
    if (out.replaced) out.replaced->catch_up = true;
    if (out.change) out.change->catch_up = true;
  }
  return out;
}

std::optional<model::ChangeSet> Tracker::vanished(std::string_view key, std::string_view observed_at,
                                                  std::string_view list_rv) {
  auto cs = detector_.forget(type_, key, store_, observed_at, list_rv);
  if (cs) cs->catch_up = true;
  return cs;
}

std::optional<model::ChangeSet> Tracker::deleted_unread(std::string_view key, std::string_view observed_at,
                                                        std::string_view rv) {
  return detector_.forget(type_, key, store_, observed_at, rv);
}

}  // namespace kubetrail::watch
