// Narrowing a diff to where two texts differ: the lengths of their common
// prefix and suffix (Pruner::changed_subtree). Internal to diff/; inline,
// because it runs on every Modified event.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace kubetrail::diff {

// Lengths of the common prefix and suffix of two texts: whole blocks by
// memcmp (libc's vector compare: most of a Modified event's text is the
// same bytes, and eight at a time the suffix alone was 4% of the watch
// thread), then the block that differs eight bytes at a time.
inline constexpr size_t kCompareBlock = 256;
inline size_t common_prefix(std::string_view a, std::string_view b) noexcept {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i + kCompareBlock <= n && std::memcmp(a.data() + i, b.data() + i, kCompareBlock) == 0) i += kCompareBlock;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    if (x != y) break;
  }
  while (i < n && a[i] == b[i]) ++i;
  return i;
}
inline size_t common_suffix(std::string_view a, std::string_view b) noexcept {
  size_t n = std::min(a.size(), b.size()), i = 0;
  const char* ea = a.data() + a.size();
  const char* eb = b.data() + b.size();
  while (i + kCompareBlock <= n && std::memcmp(ea - i - kCompareBlock, eb - i - kCompareBlock, kCompareBlock) == 0)
    i += kCompareBlock;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, ea - i - 8, 8);
    std::memcpy(&y, eb - i - 8, 8);
    if (x != y) break;
  }
  while (i < n && ea[-1 - ptrdiff_t(i)] == eb[-1 - ptrdiff_t(i)]) ++i;
  return i;
}
}  // namespace kubetrail::diff
