// Narrowing a diff to where two texts differ: the lengths of their common
// prefix and suffix (Pruner::changed_subtree). Internal to diff/; inline,
// because it runs on every Modified event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace kubetrail::diff {

// Lengths of the common prefix and suffix of two texts, compared eight bytes
// at a time.
inline size_t common_prefix(std::string_view a, std::string_view b) noexcept {
  size_t n = std::min(a.size(), b.size()), i = 0;
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
