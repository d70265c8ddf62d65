#include "common/json_writer.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace kubetrail {

namespace {
// Bytes that JSON strings must escape: control characters, '"' and '\\'.
constexpr auto kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = t['\\'] = true;
  return t;
}();
}  // namespace

namespace {
// Length of the prefix of `s` that needs no escaping. Kubernetes strings
// almost never hold a quote, backslash or control byte, so this is the whole
// string: tested eight bytes at a time (SWAR, portable to any 64-bit CPU)
// and then copied with one append.
[[gnu::always_inline]] inline size_t unescaped_prefix(std::string_view s) noexcept {
  constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    // Any byte < 0x20, or a zero byte in quote/backslash (i.e. that char):
    // the "has a byte less than n" bit trick, exact as a yes/no per word.
    uint64_t hits = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    if (hits & highs) break;
  }
  while (i < s.size() && !kNeedsEscape[static_cast<unsigned char>(s[i])]) ++i;
  return i;
}
}  // namespace

// Doubles, with 256 bytes of slack for a run of small writes - but never
// past what the string holds already: a short value (a label, a number)
// stays in the string's own inline buffer instead of taking an allocation
// (a field change's old and new value, every event).
//
// Never past the capacity a caller reserved while what is wanted fits in
// it: doubling from a small size overshot a reservation made for the whole
// text (a change set's JSON, reserved at its estimated size, was
// reallocated and copied once more near the end).
void JsonOut::grow(size_t n) {
  const size_t want = used_ + n;
  size_t size = std::max({text_.size() * 2, want, std::min(want + 256, text_.capacity())});
  if (want <= text_.capacity()) size = std::min(size, text_.capacity());
  text_.resize(size);
}

void append_json_string(std::string_view s, JsonOut& out) {
  static constexpr char hex[] = "0123456789abcdef";
  size_t clean = unescaped_prefix(s);
  if (clean == s.size()) {  // nearly always: one copy
    char* at = out.room(s.size() + 2);
    at[0] = '"';
    std::memcpy(at + 1, s.data(), s.size());
    at[s.size() + 1] = '"';
    out.advance(s.size() + 2);
    return;
  }
  out.put('"');
  for (;; clean = unescaped_prefix(s)) {
    out.put(s.substr(0, clean));
    if (clean == s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[clean]);
    s.remove_prefix(clean + 1);
    switch (c) {
      case '"': out.put("\\\""); break;
      case '\\': out.put("\\\\"); break;
      case '\n': out.put("\\n"); break;
      case '\r': out.put("\\r"); break;
      case '\t': out.put("\\t"); break;
      case '\b': out.put("\\b"); break;
      case '\f': out.put("\\f"); break;
      default: {
        const char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        out.put(std::string_view(u, sizeof u));
      }
    }
  }
  out.put('"');
}

namespace {
template <class T>
void append_number(T v, JsonOut& out) {
  char* at = out.room(40);
  auto [end, ec] = std::to_chars(at, at + 40, v);
  out.advance(size_t(end - at));
}
}  // namespace

void append_json(simdjson::dom::element e, JsonOut& out) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::OBJECT: {
      out.put('{');
      bool first = true;
      for (auto field : simdjson::dom::object(e)) {
        if (!first) out.put(',');
        first = false;
        append_json_string(field.key, out);
        out.put(':');
        append_json(field.value, out);
      }
      out.put('}');
      break;
    }
    case element_type::ARRAY: {
      out.put('[');
      bool first = true;
      for (auto v : simdjson::dom::array(e)) {
        if (!first) out.put(',');
        first = false;
        append_json(v, out);
      }
      out.put(']');
      break;
    }
    case element_type::STRING: append_json_string(std::string_view(e), out); break;
    case element_type::INT64: append_number(int64_t(e), out); break;
    case element_type::UINT64: append_number(uint64_t(e), out); break;
    case element_type::DOUBLE: {
      // Shortest round-trip form; keep a ".0" so it stays a float for readers.
      char* at = out.room(48);
      auto [end, ec] = std::to_chars(at, at + 40, double(e));
      std::string_view written(at, size_t(end - at));
      out.advance(written.size());
      if (written.find_first_of(".eEn") == std::string_view::npos) out.put(".0");
      break;
    }
    case element_type::BOOL: out.put(bool(e) ? "true" : "false"); break;
    case element_type::NULL_VALUE: out.put("null"); break;
  }
}

void append_json_string(std::string_view s, std::string& out) {
  JsonOut o(out);
  append_json_string(s, o);
  o.done();
}

void append_json(simdjson::dom::element e, std::string& out) {
  JsonOut o(out);
  append_json(e, o);
  o.done();
}

}  // namespace kubetrail
