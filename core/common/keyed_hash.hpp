// Hashes for hash tables keyed by what the API server sends (object names,
// an object's keys), keyed in turn by a secret drawn once per process.
//
// Why: with a hash everyone can compute (std::hash<std::string_view> is
// MurmurHash2 with a fixed seed in libstdc++), names can be chosen offline
// whose hashes share their low bits - the bits a table picks its slot or
// bucket by. A tenant allowed to create objects could then make each
// lookup in the cache walk thousands of slots at every event, and an
// object of many such keys make the differ's tables quadratic. XXH3 with a
// random secret (xxhash.h: "makes it more difficult for an external actor
// to prepare an intentional collision") takes the choosing away, at the
// cost of XXH3 itself (a few ns for a name).
//
// Never stored: a hash differs from one process to the next. What is
// written to disk uses plain XXH3 (state/log_file, common/dictionary_codec).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kubetrail {

uint64_t keyed_hash(std::string_view bytes) noexcept;

// For unordered containers of string-like keys (transparent: a
// std::string_view finds a std::string key without a copy).
struct KeyedHash {
  using is_transparent = void;
  size_t operator()(std::string_view bytes) const noexcept { return keyed_hash(bytes); }
};

}  // namespace kubetrail
