#include "diff/hollow_parse.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace kubetrail::diff {

namespace {

// What a token is, by its first byte; the ones checked by table alone
// (':', ',', a string) first. kSpace marks JSON's whitespace, which starts
// no token: one table serves the token and the byte before it.
enum Token : unsigned char {
  kColon,
  kComma,
  kString,
  kOpenObject,
  kCloseObject,
  kOpenArray,
  kCloseArray,
  kNumber,
  kLiteral,
  kOther,  // not the start of any JSON token
};
constexpr unsigned kSpace = 0x10;
constexpr unsigned kRefused = 0x20;  // kFollows' answer for a token that may not follow
constexpr auto kTokenOf = [] {
  std::array<unsigned char, 256> t{};
  for (auto& c : t) c = kOther;
  t['{'] = kOpenObject;
  t['}'] = kCloseObject;
  t['['] = kOpenArray;
  t[']'] = kCloseArray;
  t[':'] = kColon;
  t[','] = kComma;
  t['"'] = kString;
  t['-'] = kNumber;
  for (unsigned char d = '0'; d <= '9'; ++d) t[d] = kNumber;
  t['t'] = t['f'] = t['n'] = kLiteral;
  t[' '] = t['\t'] = t['\n'] = t['\r'] = kOther | kSpace;
  return t;
}();

// Whether token `now` may follow `before` (itself after `before2`) inside an
// object (in_array false) or an array: JSON's grammar as pairs of tokens.
// For a closing bracket the container is the one it closes; for any other
// token, the innermost one open. Only a string needs the token before it:
// after '{' or ',' it is a key (':' follows), after ':' a value.
constexpr bool may_follow(bool in_array, unsigned before2, unsigned before, unsigned now) {
  const auto value_start = [](unsigned t) {
    return t == kOpenObject || t == kOpenArray || t == kString || t == kNumber || t == kLiteral;
  };
  const auto value_end = [](unsigned t) {
    return t == kCloseObject || t == kCloseArray || t == kString || t == kNumber || t == kLiteral;
  };
  if (in_array) {
    if (before == kOpenArray) return value_start(now) || now == kCloseArray;
    if (before == kComma) return value_start(now);
    if (value_end(before)) return now == kComma || now == kCloseArray;
    return false;
  }
  if (before == kOpenObject) return now == kString || now == kCloseObject;
  if (before == kComma) return now == kString;
  if (before == kColon) return value_start(now);
  if (before == kString) {
    if (before2 == kOpenObject || before2 == kComma) return now == kColon;  // a key
    if (before2 == kColon) return now == kComma || now == kCloseObject;     // a value
    return false;
  }
  if (value_end(before)) return now == kComma || now == kCloseObject;
  return false;
}
// may_follow() for every (container, three tokens), four bits a token, the
// container's bit above them: 0 or kRefused. The token before the first
// one (kOther) only ever precedes a bracket.
constexpr auto kFollows = [] {
  std::array<unsigned char, 2 * 16 * 16 * 16> t{};
  for (unsigned a = 0; a < 2; ++a)
    for (unsigned x = 0; x < 16; ++x)
      for (unsigned y = 0; y < 16; ++y)
        for (unsigned z = 0; z < 16; ++z)
          t[(a << 12) | (x << 8) | (y << 4) | z] =
              x <= kOther && y < kOther && z < kOther && may_follow(a != 0, x, y, z) ? 0 : kRefused;
  return t;
}();

// How many bytes the walk reads between looks at what it has read (at the
// next closing bracket): often enough to give up early on a member that
// cannot pass, seldom enough to cost nothing on one that does.
constexpr size_t kLookEvery = 512;

// A number or literal token [p, q) that Pruner::copy() copies as it is: 0
// when it is one, kRefused when not. Off the loop's straight path.
[[gnu::noinline]] unsigned scalar_check(const char* p, const char* q, unsigned kind) noexcept {
  if (kind == kNumber) return Stage1::canonical_integer(p, q) ? 0 : kRefused;
  const bool literal = (q - p == 4 && (std::memcmp(p, "true", 4) == 0 || std::memcmp(p, "null", 4) == 0)) ||
                       (q - p == 5 && std::memcmp(p, "false", 5) == 0);
  return literal ? 0 : kRefused;  // kOther is refused by kFollows already
}
}  // namespace

uint32_t hollow_end(const Stage1& s1, uint32_t first) noexcept {
  const unsigned open = kTokenOf[static_cast<unsigned char>(s1.at(first))];
  if (open != kOpenObject && open != kOpenArray) return Stage1::kNone;
  const char* const src = s1.src;  // locals: nothing below stores through them
  const uint32_t* const begin = s1.idx + first;
  const uint32_t* const end = s1.idx + s1.n;
  uint64_t arrays = open == kOpenArray;        // a bit a level, innermost lowest: 1 for an array
  unsigned in_array = unsigned(arrays) << 12;  // the innermost level's bit, where kFollows wants it
  unsigned last3 = (kOther << 4) | open;       // the last tokens' kinds, four bits each
  int depth = 1;
  // Checks accumulate in `bad` (branches on them would mispredict); only
  // brackets, numbers and literals leave the straight path.
  unsigned bad = 0;
  const char* checked = src + *begin;  // the bytes before it have no backslash, and `bad` held then
  for (const uint32_t* at = begin + 1; at < end; ++at) {
    const uint32_t p = *at;
    const unsigned now = kTokenOf[static_cast<unsigned char>(src[p])];
    last3 = ((last3 << 4) | now) & 0xfff;
    // Nothing between two tokens (see Pruner::walk_source), and a token
    // that may follow the two before it.
    bad |= kTokenOf[static_cast<unsigned char>(src[p - 1])] | kFollows[in_array | last3];
    if (now <= kString) continue;  // ':', ',', a string: checked by the line above
    if (now >= kNumber) {          // never a container's last token: another follows
      bad |= scalar_check(src + p, src + (at + 1 < end ? at[1] : p + 1), now);
      continue;
    }
    if (now == kOpenObject || now == kOpenArray) {
      if (++depth > kMaxHollowDepth) return Stage1::kNone;
      arrays = (arrays << 1) | (now == kOpenArray);
    } else {
      arrays >>= 1;
      const bool whole = --depth == 0;
      if (whole || src + p >= checked + kLookEvery) {
        // No backslash: then every string is its bytes, which stage 1 has
        // checked (UTF-8, control characters, the closing quote); escapes
        // are stage 2's to check. Looked at as the walk goes, so that a
        // member that cannot pass is given up early, not after all of it:
        // a Go server escapes &, < and > in strings ("a \u0026\u0026 b" in
        // a command), and such a member is then parsed by stage 2 anyway.
        if ((bad & (kSpace | kRefused)) || std::memchr(checked, '\\', size_t(src + p - checked))) return Stage1::kNone;
        checked = src + p;
        if (whole) return uint32_t(at - s1.idx);
      }
    }
    in_array = unsigned(arrays & 1) << 12;
  }
  return Stage1::kNone;  // not closed: stage 2 will say so
}

uint32_t known_end(const Stage1& s1, uint32_t value, std::string_view known) noexcept {
  if (known.empty() || value >= s1.n) return Stage1::kNone;
  const uint32_t begin = s1.idx[value];
  // s1.src holds at least the index's last position + 1 bytes: compare
  // only within the text up to that last structural.
  if (known.size() > size_t(s1.idx[s1.n - 1]) + 1 - begin ||
      std::memcmp(s1.src + begin, known.data(), known.size()) != 0)
    return Stage1::kNone;
  const uint32_t last = begin + uint32_t(known.size()) - 1;
  const uint32_t* at = std::lower_bound(s1.idx + value, s1.idx + s1.n, last);
  return at != s1.idx + s1.n && *at == last ? uint32_t(at - s1.idx) : Stage1::kNone;
}

std::vector<uint32_t> stage2_view(const simdjson::dom::parser& parser, const HollowParse& parse) {
  std::vector<uint32_t> view;
  if (const auto* impl = parser.implementation.get())
    view.assign(impl->structural_indexes.get(), impl->structural_indexes.get() + impl->n_structural_indexes);
  view.push_back(Stage1::kNone);
  for (const uint32_t r : parse.regions) view.push_back(r < parse.index.size() ? parse.index[r] : Stage1::kNone);
  return view;
}

namespace detail {

namespace {
// Whether `parser` can run stage 1 and 2 on `text` itself. The plain parse
// allocates (and grows) what they need, and skips a byte order mark: such
// texts are left to it.
bool stage1_ready(const simdjson::dom::parser& parser, std::string_view text) noexcept {
  const auto* impl = parser.implementation.get();
  return impl && impl->capacity() >= text.size() && parser.doc.capacity() >= text.size() && text.size() >= 2 &&
         !(text.size() >= 3 && std::memcmp(text.data(), "\xEF\xBB\xBF", 3) == 0);
}
}  // namespace

bool hollow_stage1(simdjson::dom::parser& parser, std::string_view text, simdjson::error_code& error) noexcept {
  error = simdjson::SUCCESS;
  if (!stage1_ready(parser, text)) return false;
  auto* impl = parser.implementation.get();
  error = impl->stage1(reinterpret_cast<const uint8_t*>(text.data()), text.size(), simdjson::stage1_mode::regular);
  return error == simdjson::SUCCESS;
}

uint32_t prefix_stage1(simdjson::dom::parser& parser, std::string_view text, std::string_view member,
                       uint32_t last_cut) noexcept {
  if (!stage1_ready(parser, text) || member.size() > 64) return 0;
  auto* impl = parser.implementation.get();
  // `,"member":` - a ',' right before a '"' is never inside a string (a
  // quote there is escaped), though the quote may close one: stage 1 says.
  char pattern[64 + 4];
  pattern[0] = ',';
  pattern[1] = '"';
  std::memcpy(pattern + 2, member.data(), member.size());
  pattern[member.size() + 2] = '"';
  pattern[member.size() + 3] = ':';
  const size_t length = member.size() + 4;
  size_t cut = last_cut;
  // Objects of one kind have the same layout, often to the byte (one
  // ReplicaSet's Pods): the last event's cut, else a search (2 instructions
  // a byte, half of what stage 1 costs).
  if (cut < length || cut >= text.size() || std::memcmp(text.data() + cut - length, pattern, length) != 0) {
    const void* found = memmem(text.data(), text.size(), pattern, length);
    if (!found) return 0;
    cut = size_t(static_cast<const char*>(found) - text.data()) + length;
  }
  if (cut >= text.size()) return 0;
  if (impl->stage1(reinterpret_cast<const uint8_t*>(text.data()), cut, simdjson::stage1_mode::regular) !=
      simdjson::SUCCESS)
    return 0;
  return uint32_t(cut);
}

uint32_t rest_stage1(simdjson::dom::parser& parser, std::string_view text, uint32_t cut, uint32_t resume,
                     std::vector<uint32_t>& scratch) noexcept {
  auto* impl = parser.implementation.get();
  const auto* const bytes = reinterpret_cast<const uint8_t*>(text.data());
  const uint32_t prefix = impl->n_structural_indexes;  // prefix_stage1()'s, still in the parser
  try {
    scratch.assign(impl->structural_indexes.get(), impl->structural_indexes.get() + prefix);
    if (impl->stage1(bytes + resume, text.size() - resume, simdjson::stage1_mode::regular) != simdjson::SUCCESS)
      return Stage1::kNone;
    scratch.insert(scratch.end(), impl->structural_indexes.get(),
                   impl->structural_indexes.get() + impl->n_structural_indexes);
  } catch (...) {  // std::bad_alloc: the caller runs the whole text
    return Stage1::kNone;
  }
  // Stage 2 reads the bytes through the pointer the last stage 1 run was
  // given (and its length, but only for a document that is one scalar,
  // which one with an "object" member is not): a run over the opening
  // brace alone points it at the text again, for a fraction of the
  // prefix's cost; the prefix again if the text starts otherwise.
  if ((text[0] != '{' || impl->stage1(bytes, 1, simdjson::stage1_mode::regular) != simdjson::SUCCESS) &&
      impl->stage1(bytes, cut, simdjson::stage1_mode::regular) != simdjson::SUCCESS)
    return Stage1::kNone;
  uint32_t* const out = impl->structural_indexes.get();
  // Room: the pieces' structurals are the whole text's, less the known
  // member's inner ones, and the parser has room for the whole text's.
  std::memcpy(out, scratch.data(), prefix * sizeof(uint32_t));
  uint32_t n = prefix;
  if (resume != cut) {
    out[n++] = cut;         // the known member's opening bracket
    out[n++] = resume - 1;  // and its closing one
  }
  for (size_t i = prefix; i < scratch.size(); ++i) out[n++] = scratch[i] + resume;
  // What stage 1 leaves past the last structural, for stage 2 to stop on.
  out[n] = out[n + 1] = static_cast<uint32_t>(text.size());
  out[n + 2] = 0;
  impl->n_structural_indexes = n;
  impl->next_structural_index = 0;
  return prefix;
}

void whole_stage2(simdjson::dom::parser& parser, HollowParse& out) noexcept {
  out.error = parser.implementation->stage2(parser.doc);
  if (out.error == simdjson::SUCCESS) out.doc = parser.doc.root();
}

void hollow_stage2(simdjson::dom::parser& parser, std::string_view text, HollowParse& out) {
  auto* impl = parser.implementation.get();
  uint32_t* const idx = impl->structural_indexes.get();
  const uint32_t n = static_cast<uint32_t>(impl->n_structural_indexes);
  out.index.assign(idx, idx + n + 3);  // with stage 1's three entries past the end (see below)
  // Each region keeps its brackets: stage 2 reads "{}" / "[]".
  uint32_t kept = out.regions[0] + 1;
  for (size_t r = 0; r < out.regions.size(); r += 2) {
    const uint32_t close = out.regions[r + 1];
    const uint32_t next = r + 2 < out.regions.size() ? out.regions[r + 2] + 1 : n;
    std::memmove(idx + kept, idx + close, (next - close) * sizeof(uint32_t));
    kept += next - close;
  }
  // What stage 1 leaves past the last structural, for stage 2 to stop on.
  idx[kept] = idx[kept + 1] = static_cast<uint32_t>(text.size());
  idx[kept + 2] = 0;
  impl->n_structural_indexes = kept;
  impl->next_structural_index = 0;
  whole_stage2(parser, out);
}

}  // namespace detail

}  // namespace kubetrail::diff
