#include "model/path.hpp"

#include <algorithm>
#include <charconv>

#include "common/error.hpp"

namespace kubetrail::model {

namespace {
bool needs_quotes(std::string_view key) {
  if (key.empty()) return true;
  for (char c : key)
    if (c == '.' || c == '[' || c == ']' || c == '"' || c == '\\' || c == '=' || c == '*' ||
        static_cast<unsigned char>(c) < 0x20)
      return true;
  return false;
}

bool value_needs_quotes(std::string_view v) {
  if (v.empty() || v == "*" || v.front() == ' ' || v.front() == '"') return true;
  for (char c : v)
    if (c == ']' || c == '"' || c == '\\') return true;
  return false;
}

void append_quoted(std::string_view s, std::string& out) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}
}  // namespace

void append_segment(const Segment& s, bool first, std::string& out) {
  switch (s.kind) {
    case Segment::Kind::key:
      if (needs_quotes(s.key)) {
        out.push_back('[');
        append_quoted(s.key, out);
        out.push_back(']');
      } else {
        if (!first) out.push_back('.');
        out.append(s.key);
      }
      break;
    case Segment::Kind::index:
      out.push_back('[');
      out.append(std::to_string(s.index));
      out.push_back(']');
      break;
    case Segment::Kind::keyed:
      out.push_back('[');
      if (needs_quotes(s.field)) {  // not a field name a reader could take back: by position
        out.append(std::to_string(s.index));
      } else {
        out.append(s.field);
        out.push_back('=');
        if (value_needs_quotes(s.value))
          append_quoted(s.value, out);
        else
          out.append(s.value);
      }
      out.push_back(']');
      break;
  }
}

void append_path(std::span<const Segment> path, std::string& out) {
  for (size_t i = 0; i < path.size(); ++i) append_segment(path[i], i == 0, out);
}

std::string format_path(std::span<const Segment> path) {
  std::string out;
  append_path(path, out);
  return out;
}

bool PatternSegment::matches(const Segment& s) const noexcept {
  switch (kind) {
    case Kind::key: return s.kind == Segment::Kind::key && s.key == key;
    case Kind::any_key: return s.kind == Segment::Kind::key;
    case Kind::index: return s.kind == Segment::Kind::index && s.index == index;
    case Kind::any_element: return s.kind != Segment::Kind::key;
    case Kind::keyed: return s.kind == Segment::Kind::keyed && s.field == field && (any_value || s.value == value);
  }
  return false;
}

namespace {
[[noreturn]] void bad(std::string_view text, size_t at, std::string_view what) {
  throw Error("invalid path \"" + std::string(text) + "\" at character " + std::to_string(at) + ": " +
              std::string(what));
}
}  // namespace

PathPattern PathPattern::parse(std::string_view text) {
  PathPattern p;
  p.text_.assign(text);
  size_t i = 0;
  auto at_end = [&] { return i >= text.size(); };
  bool expect_segment = true;  // at start or after '.'
  while (!at_end()) {
    char c = text[i];
    if (c == '[') {
      size_t open = i++;
      PatternSegment seg;
      // A quoted string from text[i] (a '"'), backslash escapes; i ends past it.
      auto quoted = [&](size_t from) {
        ++i;
        std::string out;
        while (!at_end() && text[i] != '"') {
          if (text[i] == '\\' && i + 1 < text.size()) ++i;
          out.push_back(text[i++]);
        }
        if (at_end()) bad(text, from, "unterminated quoted string");
        ++i;  // closing quote
        return out;
      };
      if (!at_end() && text[i] == '"') {  // ["quoted key"]
        seg.kind = PatternSegment::Kind::key;
        seg.key = quoted(open);
      } else if (size_t stop = text.find_first_of("=]", i); stop != std::string_view::npos && text[stop] == '=') {
        // [field=value], [field="quoted value"], [field=*]
        if (stop == i) bad(text, open, "expected [field=value]");
        seg.kind = PatternSegment::Kind::keyed;
        seg.field.assign(text.substr(i, stop - i));
        i = stop + 1;
        if (!at_end() && text[i] == '"') {
          seg.value = quoted(open);
        } else {
          size_t close = text.find(']', i);
          if (close == std::string_view::npos) bad(text, open, "missing ']'");
          if (close == i) bad(text, open, "expected [field=value]");
          seg.value.assign(text.substr(i, close - i));
          seg.any_value = seg.value == "*";
          i = close;
        }
      } else {
        if (stop == std::string_view::npos) bad(text, open, "missing ']'");
        std::string_view inner = text.substr(i, stop - i);
        i = stop;
        if (inner == "*") {
          seg.kind = PatternSegment::Kind::any_element;
        } else {
          auto [ptr, ec] = std::from_chars(inner.data(), inner.data() + inner.size(), seg.index);
          if (ec != std::errc() || ptr != inner.data() + inner.size() || inner.empty())
            bad(text, open, "expected [index], [*], [field=value] or [\"key\"]");
          seg.kind = PatternSegment::Kind::index;
        }
      }
      if (at_end() || text[i] != ']') bad(text, i, "missing ']'");
      ++i;
      p.segments_.push_back(std::move(seg));
      expect_segment = false;
      continue;
    }
    if (c == '.') {
      if (expect_segment) bad(text, i, "empty segment");
      ++i;
      expect_segment = true;
      if (at_end()) bad(text, i, "path ends with '.'");
      continue;
    }
    if (!expect_segment) bad(text, i, "expected '.' or '['");
    size_t start = i;
    while (!at_end() && text[i] != '.' && text[i] != '[') ++i;
    std::string_view name = text.substr(start, i - start);
    PatternSegment seg;
    if (name == "*")
      seg.kind = PatternSegment::Kind::any_key;
    else {
      seg.kind = PatternSegment::Kind::key;
      seg.key.assign(name);
    }
    p.segments_.push_back(std::move(seg));
    expect_segment = false;
  }
  if (p.segments_.empty()) bad(text, 0, "empty path");
  return p;
}

void PatternSteps::add(const PathPattern& pattern) {
  if (patterns_.size() == kMax) throw Error("more than " + std::to_string(kMax) + " path patterns");
  const uint64_t bit = uint64_t{1} << patterns_.size();
  const auto& segments = pattern.segments();
  if (depths_.size() < segments.size()) depths_.resize(segments.size());
  for (size_t depth = 0; depth < segments.size(); ++depth) {
    const PatternSegment& seg = segments[depth];
    Depth& d = depths_[depth];
    if (seg.kind == PatternSegment::Kind::any_key) {
      d.any_key |= bit;
    } else if (seg.kind == PatternSegment::Kind::key) {
      auto same = std::find_if(d.keys.begin(), d.keys.end(), [&](const auto& k) { return k.first == seg.key; });
      if (same == d.keys.end())
        d.keys.emplace_back(seg.key, bit);
      else
        same->second |= bit;
    } else {
      d.elements |= bit;
    }
  }
  if (!segments.empty()) depths_[segments.size() - 1].ending |= bit;  // a parsed one has; an empty one matches nothing
  patterns_.push_back(pattern);
}

bool PathPattern::overlaps(std::span<const Segment> path) const noexcept {
  size_t n = std::min(path.size(), segments_.size());
  for (size_t i = 0; i < n; ++i)
    if (!segments_[i].matches(path[i])) return false;
  return true;
}

bool PathPattern::covers(std::span<const Segment> path) const noexcept {
  return segments_.size() <= path.size() && overlaps(path);
}

ParsedPath::ParsedPath(std::string_view text) : pattern_(PathPattern::parse(text)) {
  segments_.reserve(pattern_.segments().size());
  for (const PatternSegment& p : pattern_.segments()) {
    Segment s;
    switch (p.kind) {
      case PatternSegment::Kind::key:
        s.kind = Segment::Kind::key;
        s.key = p.key;
        break;
      case PatternSegment::Kind::index:
        s.kind = Segment::Kind::index;
        s.index = p.index;
        break;
      case PatternSegment::Kind::keyed:
        if (p.any_value) throw Error("path \"" + std::string(text) + "\" has a wildcard; a concrete path was expected");
        s.kind = Segment::Kind::keyed;
        s.field = p.field;
        s.value = p.value;
        break;
      default: throw Error("path \"" + std::string(text) + "\" has a wildcard; a concrete path was expected");
    }
    segments_.push_back(s);
  }
}

}  // namespace kubetrail::model
