#include "watch/inventory.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "common/clock.hpp"
#include "common/deep_json.hpp"
#include "config/config.hpp"
#include "diff/source_text.hpp"
#include "kube/discovery.hpp"
#include "watch/list_pages.hpp"

namespace kubetrail::watch {

namespace dom = simdjson::dom;

ResourceSnapshot::ResourceSnapshot(kube::Api& api, diff::ChangeDetector& detector, model::ResourceType type,
                                   ListScope scope, const std::atomic<bool>& stop, uint32_t page_size)
    : detector_(detector),
      type_(std::move(type)),
      name_(type_.qualified_name() + (scope.namespace_scope.empty() ? "" : " in " + scope.namespace_scope)) {
  const std::string base = collection_path(type_, scope) + "limit=" + std::to_string(page_size);
  std::unique_ptr<dom::parser> deep_parser;  // for a page with an object too deep for the first (common/deep_json.hpp)
  int restarts = 0;
  listed_at_ = now_rfc3339();
  // The continue token expired: what was listed may be older than the
  // rest would be - one snapshot is one moment, so it starts over.
  auto expired = [&](int64_t) {
    if (++restarts > 3) return false;
    spdlog::warn("{}: snapshot list continue token expired; listing again from the start", name_);
    store_ = model::ObjectStore();
    listed_at_ = now_rfc3339();
    return true;
  };
  auto page = [&](ListPage& listed) {
    if (!listed.items) return;
    for (dom::element item : *listed.items) {
      const diff::SourceText source = listed.items_text.next();
      std::string_view ns;
      if (item.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
      if (excluded(scope, ns)) continue;
      std::string why;
      if (listed.deep && too_deep(item)) {
        why = nested_deeper_than();
      } else {
        try {
          if (auto seeded = detector_.seed(type_, item, store_, &source); !seeded) why = seeded.error();
        } catch (const std::exception& e) {
          why = e.what();
        }
      }
      if (!why.empty()) {
        std::string_view name = "(no name)";
        if (item.at_pointer("/metadata/name").get(name) != simdjson::SUCCESS) name = "(no name)";
        spdlog::error("{}: snapshot: list item {}{}{}: cannot be handled, skipped: {}", name_, ns,
                      ns.empty() ? "" : "/", name, why);
        ++skipped_;
      }
    }
  };
  const ListEnd end = read_list(api, base, stop, deep_parser, expired, page);
  if (end.how == ListEnd::How::stopped) throw Error(name_ + ": snapshot stopped");
  if (end.how == ListEnd::How::failed) throw Error(name_ + ": snapshot list failed: " + end.why);
  keys_.reserve(store_.size());
  store_.for_each([&](std::string_view key, const model::StoredObject&) { keys_.emplace_back(key); });
  std::sort(keys_.begin(), keys_.end());
}

model::ChangeSet ResourceSnapshot::item(const std::string& key) {
  auto cs = detector_.snapshot(type_, key, store_, listed_at_);
  if (!cs) throw Error(name_ + ": snapshot has no object " + key);  // cannot happen: keys() are the store's
  return std::move(*cs);
}

namespace {
// The setting that announces a handler's last batch: "AT LAST_ITEM_ID".
constexpr std::string_view kLastBatchPrefix = "inventory-last-batch/";
std::string last_batch_setting(const std::string& handler) { return std::string(kLastBatchPrefix) + handler; }
}  // namespace

void SnapshotLedger::last_batch(const std::string& handler, int64_t at, const std::string& last_item_id) {
  store_.set_setting(last_batch_setting(handler), std::to_string(at) + " " + last_item_id);
}

void SnapshotLedger::taken(const std::string& handler, int64_t at) {
  store_.set_setting(config::inventory_route_name(handler), std::to_string(at));
  store_.set_setting(last_batch_setting(handler), "");  // after: a crash between them finds it taken either way
}

int64_t SnapshotLedger::last_taken(const std::string& handler) {
  const std::string announced = store_.setting(last_batch_setting(handler)).value_or("");
  if (!announced.empty()) {
    // Written by last_batch() above: "AT ID" (an id may hold spaces; AT does not).
    const size_t space = announced.find(' ');
    int64_t at = 0;
    const auto [end, ec] = std::from_chars(announced.data(), announced.data() + std::min(space, announced.size()), at);
    if (space != std::string::npos && ec == std::errc() && end == announced.data() + space &&
        store_.outbox_holds(announced.substr(space + 1), handler)) {
      spdlog::info("inventory: handler \"{}\"'s snapshot of {} was routed whole before the restart", handler, at);
      taken(handler, at);
      return at;
    }
    // Not routed whole (or unreadable): the snapshot was cut short, taken again.
    store_.set_setting(last_batch_setting(handler), "");
  }
  auto v = store_.setting(config::inventory_route_name(handler));
  return v && !v->empty() ? std::stoll(*v) : 0;
}

void SnapshotLedger::settle_announced() {
  for (const std::string& name : store_.setting_names(std::string(kLastBatchPrefix)))
    last_taken(name.substr(kLastBatchPrefix.size()));
}

}  // namespace kubetrail::watch
