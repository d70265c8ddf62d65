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

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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

// Up to kMax patterns matched together while walking a document, a
// bitmask of the ones still alive at each depth (bit i: the i-th added).
// It answers what each pattern's segments' matches() would, but a member's
// key is looked up once among the distinct literal keys at its depth
// instead of being matched against every pattern alive there (the pruner
// steps every member of every object through it: matched one by one, the
// six built-in rules of a Pod were 5% of an event's instructions).
class PatternSteps {
 public:
  static constexpr size_t kMax = 64;
  // Adds `pattern` as the next bit. Throws kubetrail::Error past kMax.
  void add(const PathPattern& pattern);
  size_t size() const noexcept { return patterns_.size(); }
  uint64_t all() const noexcept { return size() == kMax ? ~uint64_t{0} : (uint64_t{1} << size()) - 1; }
  // Of `alive`, the patterns whose segment at `depth` matches `seg`.
  uint64_t matching(uint64_t alive, size_t depth, const Segment& seg) const noexcept {
    if (depth >= depths_.size()) return 0;
    const Depth& d = depths_[depth];
    if (seg.kind == Segment::Kind::key) {
      uint64_t hit = d.any_key;
      for (const auto& [key, mask] : d.keys)
        if (key == seg.key) {
          hit |= mask;
          break;  // the keys of a depth are distinct
        }
      return hit & alive;
    }
    uint64_t hit = 0;  // an index or a keyed element: the patterns' own matches()
    for (uint64_t m = alive & d.elements; m; m &= m - 1) {
      const int i = std::countr_zero(m);
      if (patterns_[size_t(i)].segments()[depth].matches(seg)) hit |= uint64_t{1} << i;
    }
    return hit;
  }
  // The patterns whose last segment is at `depth`.
  uint64_t ending(size_t depth) const noexcept { return depth < depths_.size() ? depths_[depth].ending : 0; }

 private:
  struct Depth {
    std::vector<std::pair<std::string, uint64_t>> keys;  // each literal key, and the patterns naming it here
    uint64_t any_key = 0;                                // patterns with `*` here
    uint64_t elements = 0;                               // patterns with [n], [*] or [field=value] here
    uint64_t ending = 0;
  };
  std::vector<PathPattern> patterns_;
  std::vector<Depth> depths_;
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
