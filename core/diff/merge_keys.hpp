// Merge keys of lists. Lists that Kubernetes merges by key (strategic merge
// patch x-kubernetes-patch-merge-key / x-kubernetes-list-map-keys in the
// OpenAPI spec of the built-in types) are diffed by key, so reordering is no
// change and inserting an element is one add. Keyed by the list's field
// name; where one name has different keys in different types (container
// ports vs service ports), the first key that every element carries wins.
//
// Internal to diff/: the differ, the pruner and actor attribution read keyed
// lists the same way.
#pragma once

#include <simdjson.h>

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace kubetrail::diff {

namespace dom = simdjson::dom;

// Text of a merge-key value (string, or integer such as containerPort).
inline bool key_text(dom::element v, std::string_view& text, std::vector<std::unique_ptr<std::string>>& scratch) {
  switch (v.type()) {
    case dom::element_type::STRING: text = std::string_view(v); return true;
    case dom::element_type::INT64:
      scratch.push_back(std::make_unique<std::string>(std::to_string(int64_t(v))));
      text = *scratch.back();
      return true;
    case dom::element_type::UINT64:
      scratch.push_back(std::make_unique<std::string>(std::to_string(uint64_t(v))));
      text = *scratch.back();
      return true;
    default: return false;
  }
}

// Picks the merge key every element of the given arrays has; "" if none.
inline std::string_view choose_key(std::span<const std::string_view> candidates,
                                   std::initializer_list<dom::array> arrays) {
  for (std::string_view key : candidates) {
    bool all = true;
    for (dom::array arr : arrays) {
      for (dom::element e : arr) {
        dom::object o;
        if (e.get(o) != simdjson::SUCCESS || o[key].error() != simdjson::SUCCESS) {
          all = false;
          break;
        }
      }
      if (!all) break;
    }
    if (all) return key;
  }
  return {};
}

struct KeyedElement {
  std::string_view key;
  dom::element value;
  bool matched = false;
};

// Elements of a keyed list with their key texts; false if keys are missing,
// not scalars, or not unique (then the list is diffed by index).
// Lists up to this long are searched by scanning (no allocation); longer
// ones through a hash table: a Deployment of 40,000 env vars fits etcd's
// 1.5 MB, and pairing its elements by scans took 8.5 s an event.
inline constexpr size_t kScanUpTo = 16;

inline bool keyed_elements(dom::array arr, std::string_view key, std::vector<KeyedElement>& out,
                           std::vector<std::unique_ptr<std::string>>& scratch) {
  std::unordered_set<std::string_view> seen;  // once out is longer than kScanUpTo
  for (dom::element e : arr) {
    std::string_view text;
    if (!key_text(dom::object(e)[key].value_unsafe(), text, scratch)) return false;
    if (out.size() < kScanUpTo) {
      for (const auto& k : out)
        if (k.key == text) return false;
    } else {
      if (seen.empty()) {
        seen.reserve(arr.size());
        for (const auto& k : out) seen.insert(k.key);
      }
      if (!seen.insert(text).second) return false;
    }
    out.push_back({text, e});
  }
  return true;
}

}  // namespace kubetrail::diff
