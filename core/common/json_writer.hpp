// Minified JSON output of simdjson DOM values, straight into a caller's
// buffer (no temporary strings on the hot path).
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

namespace kubetrail {

// Appends JSON text to a std::string in small pieces, checking capacity once
// per piece (std::string::push_back checks and writes a terminator per byte:
// the pruner writes every cached object through here). The string holds
// slack beyond used() until done().
class JsonOut {
 public:
  // Appends after what `text` holds.
  explicit JsonOut(std::string& text) : text_(text), used_(text.size()) {}
  // Writes `buffer` from its start, keeping its size as slack between uses:
  // a buffer reused per event is never zero-filled again.
  static JsonOut reusing(std::string& buffer) {
    JsonOut out(buffer);
    out.used_ = 0;
    return out;
  }

  // Room for n more bytes at the returned pointer; advance() commits them.
  char* room(size_t n) {
    if (used_ + n > text_.size()) [[unlikely]]
      grow(n);
    return text_.data() + used_;
  }
  void advance(size_t n) noexcept { used_ += n; }
  void put(char c) {
    *room(1) = c;
    ++used_;
  }
  void put(std::string_view s) {
    if (!s.empty()) std::memcpy(room(s.size()), s.data(), s.size());
    used_ += s.size();
  }
  size_t used() const noexcept { return used_; }
  std::string_view view() const noexcept { return {text_.data(), used_}; }
  // Trims the slack: the string is exactly what was written.
  void done() { text_.resize(used_); }

 private:
  void grow(size_t n);  // out of line: keeps put() small enough to inline

  std::string& text_;
  size_t used_;
};

void append_json_string(std::string_view s, JsonOut& out);
void append_json(simdjson::dom::element e, JsonOut& out);

// The longest prefix of `s` of at most `max` bytes that does not end inside
// a UTF-8 character: text shortened for a summary or a routed field value
// stays valid UTF-8.
inline std::string_view utf8_prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // a continuation byte
  return s.substr(0, cut);
}

void append_json_string(std::string_view s, std::string& out);
void append_json(simdjson::dom::element e, std::string& out);
inline std::string to_json(simdjson::dom::element e) {
  std::string out;
  append_json(e, out);
  return out;
}

}  // namespace kubetrail
