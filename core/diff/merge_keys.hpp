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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/keyed_hash.hpp"

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

// Lists and objects up to this long are searched by scanning (no
// allocation); longer ones through a hash table: a Deployment of 40,000 env
// vars fits etcd's 1.5 MB, and pairing its elements by scans took 8.5 s an
// event.
inline constexpr size_t kScanUpTo = 16;

template <class Range, class KeyOf>
using KeyOfItem = std::remove_cvref_t<std::invoke_result_t<const KeyOf&, decltype(*std::declval<Range&>().begin())>>;

// The first item of each key in a range, found by key: by scans while the
// range holds at most kScanUpTo items, else through a hash table built at
// the first lookup. The first of a repeated key wins, as a scan (and
// simdjson's at_key()) finds it. `Range` is a view (a std::span, a
// dom::array, a dom::object) that must outlive this; `KeyOf` maps an item
// to a key of views into it, so that a scan allocates nothing. The keys
// are an object's, so the table's hash is keyed (common/keyed_hash.hpp):
// keys chosen to share a bucket would make it a scan again.
template <class Range, class KeyOf, class Hash = KeyedHash>
class FirstOfKey {
 public:
  using Iterator = decltype(std::declval<Range&>().begin());
  using Key = KeyOfItem<Range, KeyOf>;
  using Hasher = Hash;

  FirstOfKey(Range range, KeyOf key_of) : range_(range), size_(range.size()), key_of_(std::move(key_of)) {}

  // The first item whose key is `key`, or end().
  Iterator find(const Key& key) {
    if (size_ <= kScanUpTo) {
      for (auto it = range_.begin(); it != range_.end(); ++it)
        if (key_of_(*it) == key) return it;
      return range_.end();
    }
    build();
    auto found = table_.find(key);
    return found == table_.end() ? range_.end() : found->second;
  }
  Iterator end() { return range_.end(); }

  // Whether no two items share a key.
  bool unique() {
    if (size_ <= kScanUpTo) {
      for (auto it = range_.begin(); it != range_.end(); ++it)
        if (find(key_of_(*it)) != it) return false;
      return true;
    }
    build();
    return table_.size() == size_;
  }

 private:
  void build() {
    if (built_) return;
    built_ = true;
    table_.reserve(size_);
    for (auto it = range_.begin(); it != range_.end(); ++it) table_.emplace(key_of_(*it), it);  // keeps the first
  }

  Range range_;
  size_t size_;
  KeyOf key_of_;
  bool built_ = false;
  std::unordered_map<Key, Iterator, Hash> table_;
};

// A keyed list's elements, found by their key texts.
inline auto keyed_by_text(std::span<KeyedElement> elements) {
  return FirstOfKey(elements, [](const KeyedElement& e) { return e.key; });
}

using KeyedIndex = decltype(keyed_by_text(std::declval<std::span<KeyedElement>>()));

// Elements of a keyed list with their key texts, and what finds them by key
// (the table a long list's uniqueness check built, kept for the pairing
// rather than built again); nullopt if keys are missing, not scalars, or not
// unique (then the list is diffed by index). The index views `out`, which
// must not change while it is used.
inline std::optional<KeyedIndex> keyed_elements(dom::array arr, std::string_view key, std::vector<KeyedElement>& out,
                                                std::vector<std::unique_ptr<std::string>>& scratch) {
  for (dom::element e : arr) {
    std::string_view text;
    if (!key_text(dom::object(e)[key].value_unsafe(), text, scratch)) return std::nullopt;
    out.push_back({text, e});
  }
  KeyedIndex index = keyed_by_text(out);
  if (!index.unique()) return std::nullopt;
  return index;
}

}  // namespace kubetrail::diff
