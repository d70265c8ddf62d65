#include "diff/json_writer.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace kubetrail::diff {

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
size_t unescaped_prefix(std::string_view s) noexcept {
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

void append_json_string(std::string_view s, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (;;) {
    size_t clean = unescaped_prefix(s);
    out.append(s.data(), clean);
    if (clean == s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[clean]);
    s.remove_prefix(clean + 1);
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        out.append(u, sizeof u);
      }
    }
  }
  out.push_back('"');
}

namespace {
template <class T>
void append_number(T v, std::string& out) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}
}  // namespace

void append_json(simdjson::dom::element e, std::string& out) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::OBJECT: {
      out.push_back('{');
      bool first = true;
      for (auto field : simdjson::dom::object(e)) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(field.key, out);
        out.push_back(':');
        append_json(field.value, out);
      }
      out.push_back('}');
      break;
    }
    case element_type::ARRAY: {
      out.push_back('[');
      bool first = true;
      for (auto v : simdjson::dom::array(e)) {
        if (!first) out.push_back(',');
        first = false;
        append_json(v, out);
      }
      out.push_back(']');
      break;
    }
    case element_type::STRING: append_json_string(std::string_view(e), out); break;
    case element_type::INT64: append_number(int64_t(e), out); break;
    case element_type::UINT64: append_number(uint64_t(e), out); break;
    case element_type::DOUBLE: {
      double d = double(e);
      // Shortest round-trip form; keep a ".0" so it stays a float for readers.
      char buf[40];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
      std::string_view sv(buf, end - buf);
      out.append(sv);
      if (sv.find_first_of(".eEn") == std::string_view::npos) out.append(".0");
      break;
    }
    case element_type::BOOL: out.append(bool(e) ? "true" : "false"); break;
    case element_type::NULL_VALUE: out.append("null"); break;
  }
}

}  // namespace kubetrail::diff
