// Where an object's JSON text came from, so that pruning can copy it.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string_view>

namespace kubetrail::diff {

// The JSON text an object was parsed from, and the parser that parsed it
// (it still holds stage 1's index of every structural character of the
// text). With it the pruner copies untouched subtrees byte for byte instead
// of serializing them again - only where the copy is exactly what it would
// write (compact, no escapes, integers only), so a cached text never
// depends on which way it was made. Valid until the parser parses again.
struct SourceText {
  static constexpr uint32_t kFind = UINT32_MAX;
  const simdjson::dom::parser* parser = nullptr;
  std::string_view text;   // the bytes `parser` last parsed
  std::string_view field;  // "": the object is the document; else the document's field holding it
  uint32_t token = kFind;  // set by ListItemSources: where the object starts in the parser's index
};

// The SourceText of each object in a List response's "items", in order:
// an initial list or a relist is pruned by copying, like watch events.
// Call next() once per item, in the order the DOM iterates them.
class ListItemSources {
 public:
  ListItemSources(const simdjson::dom::parser& parser, std::string_view text);
  SourceText next();  // an empty SourceText once out of step (then the pruner serializes)

 private:
  SourceText source_;
  uint32_t next_ = SourceText::kFind;
};

}  // namespace kubetrail::diff
