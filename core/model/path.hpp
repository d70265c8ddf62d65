// Field paths of change sets, and the patterns that select them (noise rules,
// redaction, route matching). A path is dotted; lists Kubernetes merges by a
// key are addressed by it:
//
//   spec.template.spec.containers[name=web].image
//   metadata.annotations["kubectl.kubernetes.io/restartedAt"]
//   spec.rules[0].host
//
// Patterns use the same syntax plus `*` (any one key), `[*]` (any list
// element) and `[name=*]` (any element of a keyed list).
//
// A keyed value is written as is unless it could be misread: an empty
// value, one holding `]`, `"` or `\`, one starting with a space or equal to
// `*` is quoted, with `"` and `\` escaped by a backslash:
//   env[name=""]   env[name="a]b"]   items[key="*"]
// A merge-key field name that is not a plain name (it comes from a schema,
// so from the server) makes the element addressed by index instead. Every
// path kubetrail writes parses back to the same segments (tested, fuzzed).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kubetrail::model {

// One step of a concrete path, as met while walking an object. Views point
// into the walked document or the walker's own storage.
struct Segment {
  enum class Kind : unsigned char { key, index, keyed };
  Kind kind = Kind::key;
  std::string_view key;    // kind == key
  size_t index = 0;        // kind == index (also set for keyed)
  std::string_view field;  // kind == keyed: the merge key, e.g. "name"
  std::string_view value;  // kind == keyed: its value, e.g. "web"
};

// Appends the text form of `path` (see above) to out.
void append_path(std::span<const Segment> path, std::string& out);
// One segment of it; `first`: the path's first (no leading dot).
void append_segment(const Segment& segment, bool first, std::string& out);
std::string format_path(std::span<const Segment> path);

struct PatternSegment {
  enum class Kind : unsigned char { key, any_key, index, any_element, keyed };
  Kind kind = Kind::key;
  std::string key;         // key
  size_t index = 0;        // index
  std::string field;       // keyed
  std::string value;       // keyed
  bool any_value = false;  // keyed: [field=*] (a quoted "*" is the literal value)

  bool matches(const Segment& s) const noexcept;
};

// A parsed path or pattern. parse() throws kubetrail::Error naming the
// offending character offset.
class PathPattern {
 public:
  static PathPattern parse(std::string_view text);
  const std::vector<PatternSegment>& segments() const noexcept { return segments_; }
  const std::string& text() const noexcept { return text_; }

  // True when `path` and this pattern agree on every segment they both have:
  // the pattern selects the path, one of its ancestors or descendants. This
  // is what a route's `paths` means: a whole container added touches its image.
  bool overlaps(std::span<const Segment> path) const noexcept;
  // True when the pattern selects exactly `path` or one of its ancestors.
  bool covers(std::span<const Segment> path) const noexcept;

 private:
  std::vector<PatternSegment> segments_;
  std::string text_;
};

// A concrete path parsed back from its text form (for matching a change's
// path against patterns). Owns its strings.
class ParsedPath {
 public:
  explicit ParsedPath(std::string_view text);  // throws kubetrail::Error
  // Segments view pattern_'s strings: neither copyable nor movable.
  ParsedPath(const ParsedPath&) = delete;
  ParsedPath& operator=(const ParsedPath&) = delete;
  std::span<const Segment> segments() const noexcept { return segments_; }

 private:
  PathPattern pattern_;
  std::vector<Segment> segments_;
};

}  // namespace kubetrail::model
