#include "common/keyed_hash.hpp"

#include <xxhash.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <random>

namespace kubetrail {

namespace {

// XXH3's default secret is 192 bytes; a custom one must be at least
// XXH3_SECRET_SIZE_MIN (136) and look like random bytes, which these are
// (the kernel's getrandom, through std::random_device).
struct Secret {
  std::array<unsigned char, 192> bytes{};
  Secret() {
    try {
      std::random_device random;
      for (size_t i = 0; i < bytes.size(); i += 4) put(i, random());
    } catch (const std::exception&) {
      // No kernel randomness (a sandbox that forbids getrandom and has no
      // /dev/urandom): the clock and an address, spread by SplitMix64.
      // Weaker against flooding, but the hash must not stop the process.
      uint64_t state = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                       reinterpret_cast<uintptr_t>(this);
      for (size_t i = 0; i < bytes.size(); i += 4) {
        uint64_t z = (state += 0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
        z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
        put(i, static_cast<unsigned int>(z ^ (z >> 31)));
      }
    }
  }
  void put(size_t at, unsigned int word) {
    for (size_t j = 0; j < 4; ++j) bytes[at + j] = static_cast<unsigned char>(word >> (8 * j));
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
