#include "kube/watch_stream.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kubetrail::kube {

namespace {
bool json_space(char c) noexcept { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string describe_byte(char c) {
  char buf[16];
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f)
    std::snprintf(buf, sizeof buf, "'%c'", c);
  else
    std::snprintf(buf, sizeof buf, "0x%02x", u);
  return buf;
}
}  // namespace

Result<bool> JsonFramer::too_large(uint64_t size) const {
  return Result<bool>::failure("the event starting at byte offset " + std::to_string(frame_start_) + " exceeds " +
                               std::to_string(max_frame_) + " bytes (" + std::to_string(size) +
                               " so far): not a watch event of a real object");
}

// The fast path's view of 64 bytes: a bit per byte for each byte class
// the structure depends on (bit i is byte i).
struct JsonFramer::Block {
  uint64_t quote = 0, backslash = 0, open = 0, close = 0;
};

#if defined(__SSE2__)
inline JsonFramer::Block JsonFramer::classify(const char* p) noexcept {
  Block b;
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
  // '{' (0x7b) and '[' (0x5b), '}' (0x7d) and ']' (0x5d) differ only in
  // bit 0x20: one compare of (c | 0x20) finds both of a pair.
  const __m128i case_bit = _mm_set1_epi8(0x20), open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}');
  for (int part = 0; part < 4; ++part) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * part));
    __m128i folded = _mm_or_si128(v, case_bit);
    auto bits = [&](__m128i eq) { return uint64_t(uint32_t(_mm_movemask_epi8(eq))) << (16 * part); };
    b.quote |= bits(_mm_cmpeq_epi8(v, quote));
    b.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
    b.open |= bits(_mm_cmpeq_epi8(folded, open));
    b.close |= bits(_mm_cmpeq_epi8(folded, close));
  }
  return b;
}
#else
inline JsonFramer::Block JsonFramer::classify(const char* p) noexcept {
  Block b;
  for (int i = 0; i < 64; ++i) {
    char c = p[i];
    uint64_t bit = uint64_t{1} << i;
    if (c == '"') b.quote |= bit;
    if (c == '\\') b.backslash |= bit;
    if (c == '{' || c == '[') b.open |= bit;
    if (c == '}' || c == ']') b.close |= bit;
  }
  return b;
}
#endif

namespace {
// Bit i of the result: the XOR of bits 0..i - for the quote mask, whether
// byte i is inside a string (the opening quote counts as inside, the
// closing one as outside).
uint64_t prefix_xor(uint64_t x) noexcept {
  x ^= x << 1;
  x ^= x << 2;
  x ^= x << 4;
  x ^= x << 8;
  x ^= x << 16;
  x ^= x << 32;
  return x;
}

// The bytes of a block that a backslash escapes: the one after each
// backslash that is not itself escaped, as the byte path reads a string
// (`escaped_in`: the block's first byte is, by the last block's final
// backslash). `escaped_out`: its own last byte is a backslash that escapes
// the next block's first. One turn per escape, and blocks with one are few.
uint64_t escaped_bytes(uint64_t backslash, bool escaped_in, bool& escaped_out) noexcept {
  uint64_t escaped = 0;
  if (escaped_in) {
    escaped = 1;
    backslash &= ~uint64_t{1};  // an escaped backslash escapes nothing
  }
  escaped_out = false;
  while (backslash) {
    const int at = std::countr_zero(backslash);
    if (at == 63) {
      escaped_out = true;
      break;
    }
    escaped |= uint64_t{2} << at;
    backslash &= ~(uint64_t{3} << at);  // this one, and the byte it escapes
  }
  return escaped;
}

// Bits set in x. std::popcount compiles to a call into libgcc on the x86-64
// baseline Debian builds for (no POPCNT instruction): 2 us per event in
// perf; this is a dozen inline instructions.
int count_bits(uint64_t x) noexcept {
  x -= (x >> 1) & 0x5555555555555555u;
  x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
  return static_cast<int>((x * 0x0101010101010101u) >> 56);
}
}  // namespace

// One past the last byte before `end` in held + bytes (bytes' offsets after
// held's) that is not whitespace: where a line's frame would end.
size_t JsonFramer::trimmed_end(std::string_view held, std::string_view bytes, size_t end) noexcept {
  auto byte = [&](size_t k) { return k < held.size() ? held[k] : bytes[k - held.size()]; };
  while (end > 0 && json_space(byte(end - 1))) --end;
  return end;
}

bool JsonFramer::offer(std::string_view line, size_t readable_after) {
  if (readable_after >= kReadablePast) return try_line_(line, frame_start_);
  partial_.reserve(line.size() + kReadablePast);  // too near the end of the bytes fed: a copy with room after it
  partial_.assign(line);
  const bool taken = try_line_(partial_, frame_start_);
  partial_.clear();
  return taken;
}

// The frame held unscanned in partial_ was refused as a line, or grew too
// long to be one: its bytes are framed exactly, as if fed again from its
// '{' (any frames that end in them go to on_frame; what is left is held,
// scanned). Leaves offset_ where it was: at the bytes after the held ones.
Result<bool> JsonFramer::rescan(const FrameFn& on_frame) {
  std::string held = std::move(partial_);
  partial_.clear();
  offset_ = frame_start_;
  depth_ = 0;
  in_string_ = escaped_ = unscanned_ = false;
  exact_to_newline_ = true;
  return feed(held, on_frame);  // held has no newline: it is all scanned, and nothing in it is held unscanned
}

Result<bool> JsonFramer::feed(std::string_view bytes, const FrameFn& on_frame, size_t readable_after) {
  // Scan only for structure: braces outside strings. Validation of the JSON
  // itself is the parser's job once a frame is complete.
  //
  // Inside a frame, whole 64-byte blocks take the fast path: one
  // classification of the block, the bytes escaped found from its
  // backslashes, strings found by a prefix XOR of the quotes left, and only
  // the brackets outside strings looked at one by one (an 8 KB pod has a
  // few hundred). Everything else - between frames, a block with a
  // backslash outside a string (not JSON; the byte path ignores it, the
  // fast path cannot), the last bytes of a chunk - goes byte by byte, and
  // both paths keep the same state, so a stream gives the same frames
  // however it is cut (tests/unit/test_watch_stream.cpp; fuzz).
  //
  // Escapes were left to the byte path until 2026-12-05: a Kubernetes
  // object has them in every managedFields key (`k:{\"name\":\"web\"}`) and
  // in every last-applied-configuration annotation, and a block of 64
  // bytes with one backslash went byte by byte.
  size_t segment_start = 0;  // start of the bytes of the current frame within `bytes`
  size_t exact_until = 0;    // bytes before this go byte by byte (a block with a backslash outside a string)
  auto complete = [&](size_t last) -> Result<bool> {
    std::string_view piece = bytes.substr(segment_start, last + 1 - segment_start);
    if (partial_.size() + piece.size() > max_frame_) return too_large(partial_.size() + piece.size());
    if (partial_.empty() && bytes.size() - (last + 1) + readable_after >= kReadablePast) {
      on_frame(piece, frame_start_);
    } else {  // begun in earlier bytes, or too near the end of these: assembled with room after it
      partial_.reserve(partial_.size() + piece.size() + kReadablePast);
      partial_.append(piece);
      on_frame(partial_, frame_start_);
      partial_.clear();
    }
    return true;
  };
  size_t i = 0;
  while (i < bytes.size()) {
    if (unscanned_) {  // a line under way (i is 0): its newline in these bytes?
      const void* newline = std::memchr(bytes.data(), '\n', bytes.size());
      const size_t held = partial_.size();
      if (!newline && held + bytes.size() <= max_frame_) {
        partial_.append(bytes);
        offset_ += bytes.size();
        return true;
      }
      if (newline) {
        const size_t at = static_cast<size_t>(static_cast<const char*>(newline) - bytes.data());
        const size_t end = trimmed_end(partial_, bytes, held + at);
        if (end <= max_frame_ && (end > held ? bytes[end - held - 1] : partial_[end - 1]) == '}') {
          partial_.reserve(std::max(held, end) + kReadablePast);
          if (end > held) partial_.append(bytes.data(), end - held);
          const bool taken = try_line_(std::string_view(partial_).substr(0, end), frame_start_);
          partial_.resize(held);
          if (taken) {
            partial_.clear();
            unscanned_ = false;
            depth_ = 0;
            i = at + 1;
            continue;
          }
        }
      }
      auto rescanned = rescan(on_frame);
      if (!rescanned) return rescanned;
      continue;  // these bytes from the start, scanned exactly up to a newline between events
    }
    if (depth_ > 0 && i >= exact_until && bytes.size() - i >= 64) {
      Block b = classify(bytes.data() + i);
      bool escaped_out = false;
      const uint64_t escaped = escaped_bytes(b.backslash, escaped_, escaped_out);
      uint64_t inside = prefix_xor(b.quote & ~escaped) ^ (in_string_ ? ~uint64_t{0} : 0);
      if (b.backslash & ~inside) {
        exact_until = i + 64;
        continue;
      }
      uint64_t opens = b.open & ~inside, closes = b.close & ~inside;
      // The frame cannot end in a block with fewer closing brackets than
      // its depth: count them instead of walking them (most blocks).
      if (const int close_count = count_bits(closes); close_count < depth_) {
        depth_ += count_bits(opens) - close_count;
        in_string_ = inside >> 63;
        escaped_ = escaped_out;
        i += 64;
        continue;
      }
      uint64_t brackets = opens | closes;
      bool ended = false;
      for (; brackets; brackets &= brackets - 1) {
        int at = std::countr_zero(brackets);
        if (b.open >> at & 1) {
          ++depth_;
        } else if (--depth_ == 0) {
          auto done = complete(i + at);
          if (!done) return done;
          in_string_ = false;
          escaped_ = false;  // the frame closed outside any string
          i += at + 1;
          ended = true;
          break;
        }
      }
      if (!ended) {
        in_string_ = inside >> 63;
        escaped_ = escaped_out;
        i += 64;
      }
      continue;
    }
    char c = bytes[i++];
    if (depth_ == 0) {
      if (c == '\n') exact_to_newline_ = false;
      if (json_space(c)) continue;
      if (c != '{')
        return Result<bool>::failure("unexpected byte " + describe_byte(c) + " at byte offset " +
                                     std::to_string(offset_ + i - 1) + " (expected '{' starting a watch event)");
      depth_ = 1;
      frame_start_ = offset_ + i - 1;
      segment_start = i - 1;
      if (try_line_ && !exact_to_newline_) {  // offered as a line first (offer_lines())
        const void* newline = std::memchr(bytes.data() + i, '\n', bytes.size() - i);
        if (!newline) {
          if (bytes.size() - segment_start <= max_frame_) {  // held unscanned until its newline comes
            partial_.append(bytes.substr(segment_start));
            unscanned_ = true;
            offset_ += bytes.size();
            return true;
          }
        } else {
          const size_t at = static_cast<size_t>(static_cast<const char*>(newline) - bytes.data());
          const size_t end = trimmed_end({}, bytes, at);
          if (bytes[end - 1] == '}' && end - segment_start <= max_frame_ &&
              offer(bytes.substr(segment_start, end - segment_start), bytes.size() - end + readable_after)) {
            depth_ = 0;
            i = at + 1;
            continue;
          }
        }
        exact_to_newline_ = true;  // refused: scanned exactly from its '{' (i is just past it)
      }
      continue;
    }
    if (in_string_) {
      if (escaped_)
        escaped_ = false;
      else if (c == '\\')
        escaped_ = true;
      else if (c == '"')
        in_string_ = false;
      continue;
    }
    if (c == '"')
      in_string_ = true;
    else if (c == '{' || c == '[')
      ++depth_;
    else if ((c == '}' || c == ']') && --depth_ == 0) {
      auto done = complete(i - 1);
      if (!done) return done;
    }
  }
  if (depth_ > 0) {
    std::string_view rest = bytes.substr(segment_start);
    if (partial_.size() + rest.size() > max_frame_) return too_large(partial_.size() + rest.size());
    partial_.append(rest);
  }
  offset_ += bytes.size();
  return true;
}

Result<bool> JsonFramer::finish(const FrameFn& on_frame) {
  if (unscanned_) {  // once: a rescan leaves nothing unscanned
    auto rescanned = rescan(on_frame ? on_frame : [](std::string_view, uint64_t) {});
    if (!rescanned) return rescanned;
  }
  if (depth_ > 0)
    return Result<bool>::failure("stream truncated: the event starting at byte offset " + std::to_string(frame_start_) +
                                 " is incomplete at end of stream (byte offset " + std::to_string(offset_) + ")");
  return true;
}

}  // namespace kubetrail::kube
