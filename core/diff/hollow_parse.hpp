// Parsing a watch event without building the DOM of what the pruner only
// copies. Internal to diff/ (ChangeDetector::parse_event is its user; the
// tests and fuzz_diff check it against a plain parse).
//
// Why: simdjson's stage 2 (the DOM) was the largest part of an update
// event's CPU on the watch thread (39k of 174k instructions), and most of
// it was spent on a Pod's `spec` (72% of the bench Pod's tokens): a
// subtree the pruner copies byte for byte from the source and reads
// nowhere else, after walking it once more to check and find its end.
// Stage 2 only follows stage 1's index of structural characters, so a
// container whose inner structurals are taken out of the index comes out
// of stage 2 as an empty container - "hollow" - and costs nothing there;
// the one walk that checks it here also finds its end for the copy.
//
// What it must not change is what is accepted: stage 2 is where simdjson
// checks structure, literals, numbers and escapes. A member is hollowed only
// after hollow_end() has checked its tokens itself, and only when they are
// in the form the pruner copies byte for byte (no whitespace between
// tokens, no backslash, integers in canonical form, at most kMaxHollowDepth
// levels), so that the copy never needs the DOM it lacks. Anything else is
// left in the index, and stage 2 parses (or refuses) it as before: a text
// is accepted, or refused with the same error, exactly when parser.parse()
// would accept or refuse it.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "diff/stage1.hpp"

namespace kubetrail::diff {

// The last structural of the container whose first is `first` in `s1`,
// having checked that it is one JSON value in the form Pruner::copy()
// copies byte for byte (see above); Stage1::kNone when it is not (or nests
// deeper than kMaxHollowDepth). One pass over its structurals: it does what
// the pruner's walk of a copied container does, and JSON's grammar besides.
uint32_t hollow_end(const Stage1& s1, uint32_t first) noexcept;

// What parse_hollowed() did.
struct HollowParse {
  simdjson::error_code error = simdjson::UNINITIALIZED;
  simdjson::dom::element doc;
  // Stage 1's index of the whole text (SourceText::index), when members were
  // hollowed; empty when none was (the parser's own index is then whole).
  std::vector<uint32_t> index;
  // The members hollowed, as (first, last) structurals of `index`
  // (SourceText::hollow): the pruner copies them without walking them.
  std::vector<uint32_t> regions;
  // How many of them were known by their bytes (`previous`), not walked.
  uint32_t known = 0;
  bool hollowed() const noexcept { return !index.empty(); }
};

// Parses `text` with `parser` as parser.parse(text) does, but each
// top-level member of the document's "object" whose name (without escapes)
// `opaque(name)` accepts and whose value is a non-empty container passing
// hollow_end() comes out of the DOM as an empty container of its kind; the
// pruner copies its bytes from the source (SourceText::index, ::hollow).
// `text` must have simdjson's padding readable past its end. Falls back to
// a plain parse when the parser lacks the capacity (the plain parse grows
// it) or the text starts with a byte order mark.
//
// `previous(s1, object, name)` may name bytes known to pass hollow_end():
// a member of the object's last version that was so checked (or walked by
// the pruner, which checks the same but the grammar, in a text stage 2
// accepted) and copied as it was (ObjectStore's StoredObject::verbatim).
// A member with exactly those bytes is then hollowed without its walk:
// hollow_end() is a function of a container's bytes alone, since stage 1
// finds the same structurals in the same bytes starting outside a string.
// Which member's bytes it names matters for how often the walk is spared,
// never for what is accepted.
template <class Opaque, class Previous>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    Previous&& previous, HollowParse& out);
template <class Opaque>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    HollowParse& out) {
  parse_hollowed(
      parser, text, opaque, [](const Stage1&, uint32_t, std::string_view) { return std::string_view(); }, out);
}

// --- implementation --------------------------------------------------------

namespace detail {
// Stage 1 over `text` into `parser`; false when the plain parse must be used.
bool hollow_stage1(simdjson::dom::parser& parser, std::string_view text, simdjson::error_code& error) noexcept;
// Takes the inner structurals of `out.regions` out of the parser's index,
// keeping the whole index in `out.index`, then runs stage 2.
void hollow_stage2(simdjson::dom::parser& parser, std::string_view text, HollowParse& out);
// Stage 2 over the whole index (nothing hollowed).
void whole_stage2(simdjson::dom::parser& parser, HollowParse& out) noexcept;
}  // namespace detail

// The last structural of the container at `value` if its bytes are
// `known` (see parse_hollowed), else Stage1::kNone.
uint32_t known_end(const Stage1& s1, uint32_t value, std::string_view known) noexcept;

template <class Opaque, class Previous>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    Previous&& previous, HollowParse& out) {
  out.index.clear();
  out.regions.clear();  // `out` is reused event after event: nothing of the last may stay
  out.known = 0;
  const std::string_view bytes(text.data(), text.size());
  if (!detail::hollow_stage1(parser, bytes, out.error)) {
    if (out.error == simdjson::SUCCESS) out.error = parser.parse(text).get(out.doc);
    return;
  }
  Stage1 s1{bytes.data(), parser.implementation->structural_indexes.get(),
            static_cast<uint32_t>(parser.implementation->n_structural_indexes)};
  std::vector<uint32_t>& regions = out.regions;
  const uint32_t object = s1.field("object");
  if (s1.at(object) == '{') {
    for (uint32_t key = object + 1; s1.at(key) == '"' && s1.at(key + 1) == ':';) {
      const uint32_t value = key + 2;
      const char open = s1.at(value);
      uint32_t end = Stage1::kNone;
      if ((open == '{' || open == '[') && s1.at(value + 1) != (open == '{' ? '}' : ']')) {
        // The key as the DOM has it, or none: an escaped key ("d\u0061ta")
        // is never taken for another name, nor for "".
        const std::optional<std::string_view> name = s1.plain_string(key);
        if (name && opaque(*name)) {
          end = known_end(s1, value, previous(s1, object, *name));
          if (end != Stage1::kNone)
            ++out.known;
          else
            end = hollow_end(s1, value);
        }
        if (end != Stage1::kNone) {
          regions.push_back(value);
          regions.push_back(end);
        }
      }
      if (end == Stage1::kNone) end = s1.value_end(value);
      if (end == Stage1::kNone || s1.at(end + 1) != ',') break;  // the end, or stage 2 will say what is wrong
      key = end + 2;
    }
  }
  if (regions.empty())
    detail::whole_stage2(parser, out);
  else
    detail::hollow_stage2(parser, bytes, out);
}

}  // namespace kubetrail::diff
