// The informer's cache: the last known state of every object of one resource,
// keyed by namespace/name. It holds objects pruned of noise (managedFields,
// status unless wanted, ...) and with secrets already redacted, as minified
// JSON - and, once it holds kPackAfter objects, each one as a zstd frame
// against a dictionary made of its first objects (common/dictionary_codec.hpp):
// a Pod of 8 KB pruned costs a few hundred bytes here instead of client-go's
// ~33 KiB (issue 15: 100,000 pods within 300 MiB). A packing store keeps
// the frames, and each object's managers encoded, in an arena of its own
// (model/frame_arena.hpp), not as strings on the heap.
//
// Most events change nothing that is kept (status, bookkeeping): same_text()
// tells them apart by size, then by the old text decompressed - which a
// real change reads back anyway (text() keeps it) to diff it, before the
// new one is stored compressed (set_text()). A hash of each text was kept
// once, to tell them apart without decompressing: hashing 7 KB cost more
// than decompressing it against the dictionary (0.48 against 0.18 us), and
// every change and every listed object paid it (issue 15).
//
// Not thread-safe: owned by one informer (or the replay loop).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/frame_arena.hpp"
#include "model/object_table.hpp"
#include "model/stored_object.hpp"

namespace kubetrail {
class DictionaryCodec;
}

namespace kubetrail::model {

class ObjectStore {
 public:
  // A store packs once it holds this many objects (a small resource is
  // never worth a dictionary), and then packs every object it is given.
  static constexpr size_t kPackAfter = 32;

  ObjectStore();
  ~ObjectStore();
  ObjectStore(ObjectStore&&) noexcept;
  ObjectStore& operator=(ObjectStore&&) noexcept;
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  static std::string key_of(std::string_view ns, std::string_view name) {
    std::string k;
    key_of(ns, name, k);
    return k;
  }
  // The same into `out`, whose memory is reused (the detector's, per event).
  static void key_of(std::string_view ns, std::string_view name, std::string& out) {
    out.assign(ns).append(1, '/').append(name);
  }
  const StoredObject* find(std::string_view key) const { return lookup(key); }
  StoredObject* find_mutable(std::string_view key) { return lookup(key); }
  // Stores `obj` (whose json is the text; it holds no frame) under `key`,
  // packed when the store packs.
  void put(std::string key, StoredObject obj);
  // Stores `obj` with `text` as its text (obj.json is overwritten): a
  // packing store compresses straight from `text`, without the object's
  // whole text being copied into a string of its own first (at 100k pods
  // that copy and its allocation were a quarter of the list's CPU).
  // `managers`, when given, are the object's instead of obj.managers (a
  // caller's reused vector: the initial sync allocates nothing for them).
  void put(std::string key, StoredObject obj, std::string_view text,
           const std::vector<ManagerEntry>* managers = nullptr);
  void erase(std::string_view key) {
    last_ = nullptr;
    StoredObject* o = objects_.find(key);
    if (!o) return;
    release(*o);
    objects_.erase(key);
  }
  size_t size() const noexcept { return objects_.size(); }
  // f(std::string_view key, const StoredObject&) for each object, in no
  // order to rely on.
  template <class F>
  void for_each(F&& f) const {
    objects_.for_each([&](std::string_view k, const StoredObject& v) { f(k, v); });
  }

  // The text of an object of this store. Valid until the next text() or
  // same_text() call on this store, or the object's next change. The same
  // object asked for again is not decompressed again (same_text() then the
  // diff read one changed object).
  std::string_view text(const StoredObject& o) const;
  // Whether the object's text is exactly `text`: by size, then by its text
  // (decompressed, when packed: through text()).
  bool same_text(const StoredObject& o, std::string_view text) const;
  // Replaces the object's text (packed when the store packs).
  void set_text(StoredObject& o, std::string_view text);
  // An object's managers. Valid until the next managers() call on this
  // store or the object's next change.
  const std::vector<ManagerEntry>& managers(const StoredObject& o) const;
  // Replaces them with a copy of `managers` (the caller's vector, whose
  // strings stay for it to reuse).
  void set_managers(StoredObject& o, const std::vector<ManagerEntry>& managers);

  // A packed object's frame as it is (empty when not packed): what a state
  // store that packs with the same dictionary writes without recompressing.
  static std::string_view frame(const StoredObject& o) noexcept {
    return o.packed ? std::string_view(o.frame, o.frame_size) : std::string_view();
  }
  // Bytes the stored texts take in memory (capacity, packed or not: a
  // frame's slot), for tests and benchmarks.
  size_t text_bytes() const;
  // Bytes the store's frame arena holds from the system.
  size_t arena_bytes() const noexcept { return arena_.held_bytes(); }

  // Packs from now on against `dictionary` (content, as DictionaryCodec
  // takes it), every object held repacked: the state store's dictionary
  // for the resource, so that a save writes this store's frames as they
  // are instead of decompressing and compressing each changed object again.
  void pack_with(std::string_view dictionary);
  // DictionaryCodec::fingerprint() of the dictionary this store packs
  // with; 0 while it does not pack.
  uint64_t dictionary_fingerprint() const noexcept { return fingerprint_; }

 private:
  ObjectTable objects_;                                 // see model/object_table.hpp: two cache misses a lookup
  FrameArena arena_;                                    // frames and managers' codes
  std::unique_ptr<DictionaryCodec> codec_;              // once the store packs
  uint64_t fingerprint_ = 0;                            // of codec_'s dictionary
  mutable std::string scratch_;                         // text()'s output
  mutable std::vector<ManagerEntry> managers_scratch_;  // managers()' output
  std::string managers_code_;                           // set_managers()' encoding
  // The frame whose text scratch_ holds; reset whenever a frame is written
  // or given back (its slot may then hold another text at the same address).
  mutable const char* scratch_frame_ = nullptr;
  // The object last found, by its key: an event's uid check (replaced())
  // and its diff (observe()) look up the same object in turn, and at 100k
  // objects every lookup of the table misses the CPU cache. An element's
  // address survives rehashing; erase() forgets it.
  mutable std::string last_key_;
  mutable StoredObject* last_ = nullptr;
  StoredObject* lookup(std::string_view key) const {
    if (last_ && key == last_key_) return last_;
    StoredObject* o = objects_.find(key);
    if (!o) return nullptr;
    last_key_.assign(key);
    last_ = o;
    return last_;
  }
  void start_packing();
  // Puts `obj` under `key`; an object it replaces gives its frame back.
  void replace(std::string key, StoredObject obj);
  // Gives an object's frame and managers' code back to the arena.
  void release(StoredObject& o) noexcept;
  // Moves `o`'s managers (or `managers`) into the arena: for a packing store.
  void pack_managers(StoredObject& o, const std::vector<ManagerEntry>& managers);
  // Stores `text` in `o` as a frame against `codec`, or as it is when the
  // frame would be no smaller.
  void pack(DictionaryCodec& codec, StoredObject& o, std::string_view text);
};

}  // namespace kubetrail::model
