#include "model/object_table.hpp"

#include <cstring>
#include <new>

#include "common/keyed_hash.hpp"

namespace kubetrail::model {

uint64_t ObjectTable::hash_of(std::string_view key) noexcept { return keyed_hash(key); }

ObjectTable::Entry* ObjectTable::make_entry(std::string_view key) {
  // sizeof(Entry) is a multiple of its alignment, so the key's bytes start
  // right after it; one allocation holds both.
  void* memory = ::operator new(sizeof(Entry) + key.size());
  auto* e = new (memory) Entry{};
  e->key_size = static_cast<uint32_t>(key.size());
  if (!key.empty()) std::memcpy(static_cast<char*>(memory) + sizeof(Entry), key.data(), key.size());
  return e;
}

void ObjectTable::free_entry(Entry* e) noexcept {
  e->~Entry();
  ::operator delete(e);
}

size_t ObjectTable::probe(std::string_view key, uint64_t hash) const noexcept {
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    // The full hash first: the entry (another cache miss) is read only for
    // the key it almost surely holds.
    if (!s.entry || (s.hash == hash && s.entry->key() == key)) return i;
  }
}

StoredObject* ObjectTable::find(std::string_view key) const noexcept {
  if (size_ == 0) return nullptr;
  const Slot& s = slots_[probe(key, hash_of(key))];
  return s.entry ? &s.entry->object : nullptr;
}

std::pair<StoredObject*, bool> ObjectTable::try_emplace(std::string_view key) {
  const uint64_t hash = hash_of(key);
  if (size_ > 0) {
    const Slot& s = slots_[probe(key, hash)];
    if (s.entry) return {&s.entry->object, false};
  }
  // At most half full: a probe then ends within a slot or two on average.
  if ((size_ + 1) * 2 > slots_.size()) grow();
  Entry* e = make_entry(key);
  slots_[probe(key, hash)] = Slot{hash, e};
  ++size_;
  return {&e->object, true};
}

bool ObjectTable::erase(std::string_view key) noexcept {
  if (size_ == 0) return false;
  const size_t mask = slots_.size() - 1;
  size_t hole = probe(key, hash_of(key));
  if (!slots_[hole].entry) return false;
  free_entry(slots_[hole].entry);
  slots_[hole] = Slot{};
  --size_;
  // Backward shift: each slot after the hole, up to the next empty one,
  // moves into the hole when the hole lies on its probe (between its home
  // slot and itself, cyclically), so that every key stays reachable from
  // its home without tombstones.
  for (size_t i = (hole + 1) & mask; slots_[i].entry; i = (i + 1) & mask) {
    const size_t home = slots_[i].hash & mask;
    const bool hole_on_probe = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
    if (hole_on_probe) {
      slots_[hole] = slots_[i];
      slots_[i] = Slot{};
      hole = i;
    }
  }
  return true;
}

void ObjectTable::clear() noexcept {
  for (Slot& s : slots_)
    if (s.entry) free_entry(s.entry);
  slots_.clear();
  size_ = 0;
}

void ObjectTable::grow() {
  std::vector<Slot> old(slots_.empty() ? 16 : slots_.size() * 2);
  old.swap(slots_);
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (!s.entry) continue;
    size_t i = s.hash & mask;
    while (slots_[i].entry) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

}  // namespace kubetrail::model
