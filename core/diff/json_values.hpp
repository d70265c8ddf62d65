// Small questions about simdjson values that the differ, the pruner and
// actor attribution all ask. Internal to diff/.
#pragma once

#include <simdjson.h>

#include <string>
#include <string_view>

namespace kubetrail::diff {

namespace dom = simdjson::dom;

inline bool is_container(dom::element e) {
  auto t = e.type();
  return t == dom::element_type::OBJECT || t == dom::element_type::ARRAY;
}

inline bool same_scalar(dom::element a, dom::element b) {
  using T = dom::element_type;
  T ta = a.type(), tb = b.type();
  if (ta != tb) {
    // 3 and 3.0 (or int64/uint64 of one value) are the same number.
    auto is_num = [](T t) { return t == T::INT64 || t == T::UINT64 || t == T::DOUBLE; };
    if (is_num(ta) && is_num(tb)) return double(a) == double(b);
    return false;
  }
  switch (ta) {
    case T::STRING: return std::string_view(a) == std::string_view(b);
    case T::INT64: return int64_t(a) == int64_t(b);
    case T::UINT64: return uint64_t(a) == uint64_t(b);
    case T::DOUBLE: return double(a) == double(b);
    case T::BOOL: return bool(a) == bool(b);
    case T::NULL_VALUE: return true;
    default: return false;
  }
}

// The string field `key` of `e`, or "": a view into e's document.
inline std::string_view string_view_at(dom::element e, std::string_view key) {
  std::string_view s;
  if (e[key].get(s) == simdjson::SUCCESS) return s;
  return {};
}

// The string field `key` of `e`, or "".
inline std::string string_at(dom::element e, std::string_view key) { return std::string(string_view_at(e, key)); }

}  // namespace kubetrail::diff
