// The cache's table (ObjectStore's): each object by its namespace/name key,
// found touching as few cache lines as can be.
//
// At 100,000 objects every lookup misses the CPU cache; what matters is how
// many times. std::unordered_map missed about four times an event (the
// bucket, the node before the one found - libstdc++ keeps buckets as
// pointers to the node before their first -, the node, and the key's
// characters on the heap; callgrind's cache simulation, issue 15). Here a
// lookup reads one slot (its key's full hash and its entry, four to a cache
// line, linear probing, at most half full) and then the one entry whose hash
// is equal: the object and, in the same allocation right after it, its
// key's characters. Two misses.
//
// Entries never move (each is an allocation of its own), so a pointer to an
// object stays valid until that object is erased, as with std::unordered_map.
// Iteration follows the slots: no order to rely on.
//
// Not thread-safe (see ObjectStore).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "model/stored_object.hpp"

namespace kubetrail::model {

class ObjectTable {
 public:
  ObjectTable() = default;
  ~ObjectTable() { clear(); }
  ObjectTable(ObjectTable&& o) noexcept : slots_(std::move(o.slots_)), size_(std::exchange(o.size_, 0)) {}
  ObjectTable& operator=(ObjectTable&& o) noexcept {
    if (this != &o) {
      clear();
      slots_ = std::move(o.slots_);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;

  // The object under `key`, or null. Not const: the table's own element,
  // which ObjectStore hands out as its callers may use it.
  StoredObject* find(std::string_view key) const noexcept;
  // The object under `key`, added (default-constructed) when there was none;
  // `second` says whether it was added.
  std::pair<StoredObject*, bool> try_emplace(std::string_view key);
  // Removes the object under `key`, if there is one; says whether there was.
  bool erase(std::string_view key) noexcept;
  size_t size() const noexcept { return size_; }
  void clear() noexcept;

  // The hash a key is filed under, its low bits its home slot: keyed by a
  // secret of the process (common/keyed_hash.hpp), so that names cannot be
  // chosen to share a home. Public for the test that says so.
  static uint64_t hash_of(std::string_view key) noexcept;

  // f(std::string_view key, StoredObject& object) for each object.
  template <class F>
  void for_each(F&& f) {
    for (const Slot& s : slots_)
      if (s.entry) f(s.entry->key(), s.entry->object);
  }
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.entry) f(s.entry->key(), std::as_const(s.entry->object));
  }

 private:
  // An object and, in the same allocation right after it, its key's bytes.
  struct Entry {
    StoredObject object;
    uint32_t key_size = 0;
    std::string_view key() const noexcept { return {reinterpret_cast<const char*>(this) + sizeof(Entry), key_size}; }
  };
  static Entry* make_entry(std::string_view key);
  static void free_entry(Entry* e) noexcept;

  struct Slot {
    uint64_t hash = 0;
    Entry* entry = nullptr;  // null: empty
  };
  // The slot holding `key`, or the empty slot where its probe ends.
  size_t probe(std::string_view key, uint64_t hash) const noexcept;
  void grow();

  std::vector<Slot> slots_;  // a power of two of them, or none
  size_t size_ = 0;
};

}  // namespace kubetrail::model
