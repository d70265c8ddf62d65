#include "diff/json_writer.hpp"

#include <array>
#include <charconv>
#include <cstdio>

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

void append_json_string(std::string_view s, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default:
        out.append("\\u00");
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0xf]);
    }
  }
  out.append(s.data() + run, s.size() - run);
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
