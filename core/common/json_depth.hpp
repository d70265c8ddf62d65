// How deep untrusted JSON nests, before nlohmann parses it. nlohmann's
// parser is iterative, but dump(), copies and comparisons recurse once a
// level, so a document of 100,000 nested brackets (a journal entry, an
// outbox row, a change API answer: files and servers a user points at)
// overflowed the stack. No Kubernetes object nests anywhere near
// kMaxJsonDepth (simdjson's default limit is the same).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kubetrail {

inline constexpr size_t kMaxJsonDepth = 1024;

// The byte offset of the bracket at which arrays and objects in `text`
// nest deeper than `limit` (brackets inside strings do not count), or npos.
// Linear, no allocation; malformed JSON is the parser's to report.
inline size_t json_depth_exceeded_at(std::string_view text, size_t limit = kMaxJsonDepth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character, whatever it is
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

inline bool json_nested_deeper_than(std::string_view text, size_t limit = kMaxJsonDepth) {
  return json_depth_exceeded_at(text, limit) != std::string_view::npos;
}

// The words every refusal by depth uses: "nested deeper than LIMIT levels".
inline std::string nested_deeper_than(size_t limit = kMaxJsonDepth) {
  return "nested deeper than " + std::to_string(limit) + " levels";
}

}  // namespace kubetrail
