// simdjson's stage-1 index of a parsed text, read so that the pruner can copy
// untouched subtrees byte for byte (see SourceText). Internal to diff/;
// inline, because the pruner walks it for every object.
#pragma once

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "diff/source_text.hpp"

namespace kubetrail::diff {

// Stage1 reads simdjson's internal parser state (implementation->
// structural_indexes), which is not public API: a simdjson this code was
// not written against must be looked at before it is used, not trusted.
// Written against 3.0 (Debian bookworm's libsimdjson-dev 3.0.1).
static_assert(simdjson::SIMDJSON_VERSION_MAJOR == 3 && simdjson::SIMDJSON_VERSION_MINOR == 0,
              "diff/stage1.hpp's Stage1 reads simdjson's internal structural index: check it against this simdjson "
              "version (dom_parser_implementation::structural_indexes, n_structural_indexes), then update this "
              "assertion");

// A container nested deeper than this is never left out of a parse's DOM
// (diff/hollow_parse.hpp) nor taken as a checked copy's bytes.
inline constexpr int kMaxHollowDepth = 64;

// simdjson's stage-1 output for a parsed text: the index of every
// structural character ({}[]:, and the first byte of every string, number
// and literal), in order. A container's members sit at known offsets from
// its bracket: key, ':', value, then ',' or the close.
struct Stage1 {
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr auto kDepthStep = [] {
    std::array<signed char, 256> t{};
    t['{'] = t['['] = 1;
    t['}'] = t[']'] = -1;
    return t;
  }();
  const char* src = nullptr;
  const uint32_t* idx = nullptr;
  uint32_t n = 0;

  // The index `source.parser` holds for `source.text` (or `source.index`,
  // when set); false if none.
  bool bind(const SourceText& source) noexcept {
    *this = {};
    const uint32_t* index = nullptr;
    uint32_t count = 0;
    if (source.index.size() > 3) {  // stage 1's index, and its three entries past the end
      index = source.index.data();
      count = static_cast<uint32_t>(source.index.size() - 3);
    } else if (const auto* impl = source.parser ? source.parser->implementation.get() : nullptr) {
      index = impl->structural_indexes.get();
      count = impl->n_structural_indexes;
    }
    if (!index || count == 0 || index[count - 1] >= source.text.size()) return false;
    src = source.text.data();
    idx = index;
    n = count;
    return true;
  }
  // Whether the bytes of the integer token [p, q) are what append_json
  // writes for its value, so that the pruner may copy them: 0 or
  // -?[1-9][0-9]*, short enough to be an int64. Not "-0": its value is 0,
  // written "0" (a copy kept it "-0", and the cached text then depended on
  // whether it was copied or written).
  static bool canonical_integer(const char* p, const char* q) noexcept {
    if (p < q && *p == '-') {
      ++p;
      if (p < q && *p == '0') return false;
    }
    if (p == q || q - p > 18 || (*p == '0' && q - p > 1)) return false;
    for (; p < q; ++p)
      if (*p < '0' || *p > '9') return false;
    return true;
  }
  char at(uint32_t i) const noexcept { return i < n ? src[idx[i]] : '\0'; }
  static uint32_t plus(uint32_t i, uint32_t k) noexcept { return i == kNone ? kNone : i + k; }
  // Index of the last structural of the value whose first is `i`.
  uint32_t value_end(uint32_t i) const noexcept {
    char c = at(i);
    if (c == '\0') return kNone;
    if (c != '{' && c != '[') return i;
    for (int depth = 0; i < n; ++i) {
      depth += kDepthStep[static_cast<unsigned char>(src[idx[i]])];
      if (depth == 0) return i;
    }
    return kNone;
  }
  // Where the value of the document's top-level field `name` starts ("object"
  // of a watch event, "items" of a list); its quoted name must be the key's
  // exact bytes.
  uint32_t field(std::string_view name) const noexcept { return member(0, name); }
  // The same inside the object whose '{' is structural `object`.
  uint32_t member(uint32_t object, std::string_view name) const noexcept {
    if (at(object) != '{') return kNone;
    for (uint32_t last = object; at(last) == '{' || at(last) == ',';) {
      uint32_t key = last + 1;
      if (at(key) != '"') break;
      // An escaped key ("obj\u0065ct") may be the one the DOM took for
      // `name`: raw bytes cannot tell, so no source (the pruner serializes).
      if (std::memchr(src + idx[key], '\\', idx[key + 1] - idx[key])) return kNone;
      if (idx[key] + name.size() + 2 <= idx[key + 1] && std::string_view(src + idx[key] + 1, name.size()) == name &&
          src[idx[key] + 1 + name.size()] == '"')
        return key + 2;
      last = plus(value_end(key + 2), 1);
    }
    return kNone;
  }
  // The bytes between the quotes of the string whose first structural is
  // `i`, when they are its value: no backslash, and the closing quote right
  // before the next structural (a key's ':', a value's ',' or bracket).
  // nullopt otherwise - never "" for a string that is not "".
  std::optional<std::string_view> plain_string(uint32_t i) const noexcept {
    if (at(i) != '"' || i + 1 >= n) return std::nullopt;
    const uint32_t quote = idx[i + 1] - 1;
    if (quote <= idx[i] || src[quote] != '"') return std::nullopt;
    const std::string_view bytes(src + idx[i] + 1, quote - idx[i] - 1);
    if (bytes.find('\\') != std::string_view::npos) return std::nullopt;
    return bytes;
  }
};
}  // namespace kubetrail::diff
