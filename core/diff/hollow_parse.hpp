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
#include <cstring>
#include <optional>
#include <span>
#include <string>
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
  // The object's other members that are non-empty containers, as (first,
  // last) structurals, their ends found on the way (SourceText::ends).
  std::vector<uint32_t> ends;
  // How many members were known by their bytes (`previous`), not walked.
  uint32_t known = 0;
  // Whether stage 1 ran in two pieces around a known member, never reading
  // its bytes (see parse_hollowed): `index` then lacks its inner
  // structurals as well as stage 2's input did.
  bool split = false;
  // The largest member a parse knew by its bytes, kept from one event to
  // the next (the informer reuses one HollowParse for one resource): where
  // the next parse tries to cut stage 1. "" until one was known.
  std::string split_member;
  uint32_t split_at = 0;  // where the last such cut was, in its text: tried first
  // The pieces' indexes while stage 1 runs around the known member, and
  // the ends of the members before it, found checking the cut (scratch).
  std::vector<uint32_t> scratch, walked;
  bool hollowed() const noexcept { return !index.empty(); }
  // The text this parse read with `parser`, for the pruner to copy from:
  // its index and the members left out. `field`: see SourceText.
  SourceText source(const simdjson::dom::parser& parser, std::string_view text, std::string_view field) const noexcept {
    SourceText s{&parser, text, field};
    s.index = index;
    s.hollow = regions;
    s.ends = ends;
    return s;
  }
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
//
// Stage 1 need not read those bytes either (a Pod's spec is 75% of its
// event): when `out.split_member` names a member an earlier event knew,
// stage 1 runs up to the value of a `,"<member>":` in the text (where the
// last cut was, else the first). If that is a top-level member of "object"
// whose value starts with the bytes `previous` names, stage 1 runs again
// from their end; if the bytes differ, from the cut (a member not at the
// top level: over the whole text). Then over the opening brace alone:
// stage 2 reads the text through the last run's pointer. The pieces' runs
// find exactly the structurals one run finds: each piece starts outside a
// string, after an operator (':' ends the first piece; the known bytes,
// one JSON container with no backslash, end with a bracket), and UTF-8
// sequences do not straddle either cut (ASCII bytes on both sides). Stage 1
// reports an unclosed string at its end, so a cut that falls inside one
// (`"a,"spec":`) fails the first run; any run that fails sends the whole
// text to one run, which then reports what a plain parse reports. The
// known member's own structurals are never found: it enters stage 2 as
// the brackets only, as a hollowed member does anyway.
template <class Opaque, class Previous>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    Previous&& previous, HollowParse& out);
template <class Opaque>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    HollowParse& out) {
  parse_hollowed(
      parser, text, opaque, [](const Stage1&, uint32_t, std::string_view) { return std::string_view(); }, out);
}

// What two parses of one text must agree on, whichever way stage 1 ran:
// the structurals stage 2 read (byte offsets, from `parser`'s index after
// the parse), then a kNone, then each member left out as the byte offsets
// of its brackets. For the tests and fuzz_diff.
std::vector<uint32_t> stage2_view(const simdjson::dom::parser& parser, const HollowParse& parse);

// --- implementation --------------------------------------------------------

namespace detail {
// Stage 1 over `text` into `parser`; false when the plain parse must be used.
bool hollow_stage1(simdjson::dom::parser& parser, std::string_view text, simdjson::error_code& error) noexcept;
// Takes the inner structurals of `out.regions` out of the parser's index,
// keeping the whole index in `out.index`, then runs stage 2.
void hollow_stage2(simdjson::dom::parser& parser, std::string_view text, HollowParse& out);
// Stage 2 over the whole index (nothing hollowed).
void whole_stage2(simdjson::dom::parser& parser, HollowParse& out) noexcept;
// Stage 1 over the text up to the value of a `,"member":` (the one ending
// at `last_cut` if there is one, else the first), into `parser`: the
// offset of that value's first byte (the cut), or 0 when no such cut could
// be run (no such bytes, or stage 1 refused the piece).
uint32_t prefix_stage1(simdjson::dom::parser& parser, std::string_view text, std::string_view member,
                       uint32_t last_cut) noexcept;
// After prefix_stage1(), with the known member's bytes at [cut, resume)
// (none when resume == cut): stage 1 over the text from `resume` on, its
// index appended to the prefix's with the known member's brackets between
// (both kept in `scratch` meanwhile). Returns the prefix's structural
// count (the index of the opening bracket, if any), or Stage1::kNone when
// stage 1 refused a piece: the caller runs the whole text instead.
uint32_t rest_stage1(simdjson::dom::parser& parser, std::string_view text, uint32_t cut, uint32_t resume,
                     std::vector<uint32_t>& scratch) noexcept;
}  // namespace detail

// The last structural of the container at `value` if its bytes are
// `known` (see parse_hollowed), else Stage1::kNone.
uint32_t known_end(const Stage1& s1, uint32_t value, std::string_view known) noexcept;

template <class Opaque, class Previous>
void parse_hollowed(simdjson::dom::parser& parser, simdjson::padded_string_view text, Opaque&& opaque,
                    Previous&& previous, HollowParse& out) {
  out.index.clear();
  out.regions.clear();  // `out` is reused event after event: nothing of the last may stay
  out.ends.clear();
  out.known = 0;
  out.split = false;
  const std::string_view bytes(text.data(), text.size());
  auto* const impl = parser.implementation.get();
  // The known member's value, when stage 1 ran around it: its brackets are
  // adjacent in the index.
  uint32_t split_value = Stage1::kNone;
  bool staged = false;
  if (!out.split_member.empty() && opaque(std::string_view(out.split_member))) {
    if (const uint32_t cut = detail::prefix_stage1(parser, bytes, out.split_member, out.split_at); cut != 0) {
      const Stage1 prefix{bytes.data(), impl->structural_indexes.get(),
                          static_cast<uint32_t>(impl->n_structural_indexes)};
      const uint32_t colon = prefix.n - 1, key = prefix.n - 2;  // the cut's `"member":`
      uint32_t resume = cut;
      const size_t quote = cut - out.split_member.size() - 3;  // where prefix_stage1 found `"member":`
      const uint32_t object = prefix.n >= 2 && prefix.idx[colon] == cut - 1 && prefix.idx[key] == quote
                                  ? prefix.field("object")
                                  : Stage1::kNone;
      uint32_t member = object != Stage1::kNone && prefix.at(object) == '{' ? object + 1 : Stage1::kNone;
      out.walked.clear();
      while (member != key && member != Stage1::kNone && prefix.at(member) == '"' && prefix.at(member + 1) == ':') {
        const uint32_t end = prefix.value_end(member + 2);
        out.walked.push_back(end);
        member = end != Stage1::kNone && prefix.at(end + 1) == ',' ? end + 2 : Stage1::kNone;
      }
      if (member == key) {  // a top-level member of "object", not one inside another
        const std::string_view known = previous(prefix, object, out.split_member);
        // Not an empty container ("{}"): never hollowed, cut or not.
        if (known.size() > 2 && known.size() < bytes.size() - cut &&
            std::memcmp(bytes.data() + cut, known.data(), known.size()) == 0)
          resume = cut + static_cast<uint32_t>(known.size());
        // Changed (a spec edit): stage 1 goes on from the cut, the prefix
        // not run twice.
        const uint32_t first = detail::rest_stage1(parser, bytes, cut, resume, out.scratch);
        staged = first != Stage1::kNone;
        if (staged) out.split_at = cut;
        if (staged && resume != cut) {
          split_value = first;
          out.split = true;
        }
      }
    }
  }
  if (!staged && !detail::hollow_stage1(parser, bytes, out.error)) {
    if (out.error == simdjson::SUCCESS) out.error = parser.parse(text).get(out.doc);
    return;
  }
  Stage1 s1{bytes.data(), impl->structural_indexes.get(), static_cast<uint32_t>(impl->n_structural_indexes)};
  std::vector<uint32_t>& regions = out.regions;
  std::string_view largest_known;  // its name
  uint32_t largest_size = 0;
  const uint32_t object = s1.field("object");
  // The ends of the members before the split one, found on the prefix's
  // index, which is this one's up to the cut.
  const std::span<const uint32_t> walked = staged ? std::span<const uint32_t>(out.walked) : std::span<const uint32_t>{};
  if (s1.at(object) == '{') {
    for (uint32_t key = object + 1, m = 0; s1.at(key) == '"' && s1.at(key + 1) == ':'; ++m) {
      const uint32_t value = key + 2;
      const char open = s1.at(value);
      uint32_t end = Stage1::kNone;
      if (value == split_value) {  // known, and its inside never indexed
        end = value + 1;
        ++out.known;
        regions.push_back(value);
        regions.push_back(end);
      } else if ((open == '{' || open == '[') && s1.at(value + 1) != (open == '{' ? '}' : ']')) {
        // The key as the DOM has it, or none: an escaped key ("d\u0061ta")
        // is never taken for another name, nor for "".
        const std::optional<std::string_view> name = s1.plain_string(key);
        if (name && opaque(*name)) {
          end = known_end(s1, value, previous(s1, object, *name));
          if (end != Stage1::kNone) {
            ++out.known;
            if (s1.idx[end] - s1.idx[value] > largest_size) {
              largest_size = s1.idx[end] - s1.idx[value];
              largest_known = *name;
            }
          } else {
            end = hollow_end(s1, value);
          }
        }
        if (end != Stage1::kNone) {
          regions.push_back(value);
          regions.push_back(end);
        }
      }
      if (end == Stage1::kNone) {
        end = m < walked.size() ? walked[m] : s1.value_end(value);
        if (end != Stage1::kNone && end > value + 1 && (open == '{' || open == '[')) {
          out.ends.push_back(value);
          out.ends.push_back(end);
        }
      }
      if (end == Stage1::kNone || s1.at(end + 1) != ',') break;  // the end, or stage 2 will say what is wrong
      key = end + 2;
    }
  }
  // The member to cut at next time: the split one stays while it is known.
  if (split_value == Stage1::kNone && !largest_known.empty() && largest_known != out.split_member)
    out.split_member.assign(largest_known);
  if (regions.empty())
    detail::whole_stage2(parser, out);
  else
    detail::hollow_stage2(parser, bytes, out);
}

}  // namespace kubetrail::diff
