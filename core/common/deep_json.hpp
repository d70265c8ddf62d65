// Objects nested deeper than kubetrail handles. kube-apiserver accepts JSON
// nested up to 10,000 levels (Go's decoder's limit), so a custom resource
// with preserved unknown fields can nest far deeper than simdjson's default
// of 1,024 that the informer's parsers use. Such an object made its whole
// list page, or its watch event, fail to parse: the list was retried, and
// the watch restarted at the event, for ever - one odd object stopped the
// resource. Now the page or event is parsed again with a parser that
// allows the server's depth; the object too deep is reported and skipped
// (the cache keeps what it had of it), everything around it goes on. The
// diff, the pruner and the change set's JSON recurse once a level, so
// kubetrail itself stays at kMaxJsonDepth. In common/ because a recording
// (kube/recording.cpp) reads the same events from a file.
#pragma once

#include <simdjson.h>

#include <memory>

#include "common/json_depth.hpp"

namespace kubetrail {

// Deeper than kube-apiserver writes anything, list envelope included.
inline constexpr size_t kDeepestServerJson = 10100;

// What parse_allowing_deep() read, and with which parser.
struct DeepParse {
  simdjson::error_code error = simdjson::SUCCESS;
  simdjson::dom::element doc;
  simdjson::dom::parser* parser = nullptr;
  bool deep = false;  // parsed by the deep parser: items may be too deep (too_deep())
};

// Parses `text` with `parser` - a std::string (in place when simdjson's
// padding fits in its capacity, else copied: simdjson's own choice) or a
// simdjson::padded_string_view; a text nested too deep for `parser` is
// parsed again with `deep`, made at the first need and kept.
template <class Text>
DeepParse parse_allowing_deep(simdjson::dom::parser& parser, std::unique_ptr<simdjson::dom::parser>& deep,
                              const Text& text) {
  DeepParse p;
  p.parser = &parser;
  p.error = parser.parse(text).get(p.doc);
  if (p.error != simdjson::DEPTH_ERROR) return p;
  if (!deep) {
    deep = std::make_unique<simdjson::dom::parser>();
    if (deep->allocate(text.size(), kDeepestServerJson) != simdjson::SUCCESS) return p;
  }
  p.parser = deep.get();
  p.deep = true;
  p.error = deep->parse(text).get(p.doc);
  return p;
}

// Whether a value of a deep parse nests deeper than kubetrail handles (its
// minified text, made only on this rare path: simdjson writes it without
// recursing more than once every 16 levels).
inline bool too_deep(simdjson::dom::element value) {
  return json_nested_deeper_than(simdjson::minify(value), kMaxJsonDepth);
}

}  // namespace kubetrail
