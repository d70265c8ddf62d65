// Where an object's JSON text came from, so that pruning can copy it.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <span>
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
  // Set by ListItemSources: where a prune() that followed the source to the
  // object's end stores the index of its closing brace, so that finding
  // the next item does not walk this one's structurals a second time.
  uint32_t* end = nullptr;
  // Stage 1's index of `text`, when the parser's own is not whole: a parse
  // that hollowed members (diff/hollow_parse.hpp) took their structurals
  // out of it for stage 2. Empty: the parser's.
  std::span<const uint32_t> index = {};
  // The containers that parse left out, as (first, last) structurals of
  // `index`, in document order (the pruner looks them up by binary search):
  // checked then, so the pruner copies them without a walk.
  std::span<const uint32_t> hollow = {};
  // Other containers whose ends that parse found, the same way and order:
  // the pruner skipping a dropped last member of one closes it there
  // instead of walking that member (a Pod's managedFields, ~300
  // structurals an event).
  std::span<const uint32_t> ends = {};
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
  uint32_t current_ = SourceText::kFind;      // where the item next() last gave starts
  uint32_t current_end_ = SourceText::kFind;  // where it ends, if its prune() said (SourceText::end)
  uint32_t first_ = SourceText::kFind;        // the first item's start
};

}  // namespace kubetrail::diff
