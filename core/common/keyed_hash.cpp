#include "common/keyed_hash.hpp"

#include <xxhash.h>

#include <array>
#include <random>

namespace kubetrail {

namespace {

// XXH3's default secret is 192 bytes; a custom one must be at least
// XXH3_SECRET_SIZE_MIN (136) and look like random bytes, which these are
// (the kernel's getrandom, through std::random_device).
struct Secret {
  std::array<unsigned char, 192> bytes{};
  Secret() {
    std::random_device random;
    for (size_t i = 0; i < bytes.size(); i += 4) {
      const unsigned int word = random();
      for (size_t j = 0; j < 4; ++j) bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
    }
  }
};
static_assert(sizeof(Secret::bytes) >= XXH3_SECRET_SIZE_MIN);

const Secret& secret() {
  static const Secret s;  // drawn at the first hash, once (thread-safe static)
  return s;
}

}  // namespace

uint64_t keyed_hash(std::string_view bytes) noexcept {
  const Secret& s = secret();
  return XXH3_64bits_withSecret(bytes.data(), bytes.size(), s.bytes.data(), s.bytes.size());
}

}  // namespace kubetrail
