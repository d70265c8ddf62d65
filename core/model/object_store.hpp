// The informer's cache: the last known state of every object of one resource,
// keyed by namespace/name. It holds objects pruned of noise (managedFields,
// status unless wanted, ...) and with secrets already redacted, as minified
// JSON - and, once it holds kPackAfter objects, each one as a zstd frame
// against a dictionary made of its first objects (common/dictionary_codec.hpp):
// a Pod of 8 KB pruned costs a few hundred bytes here instead of client-go's
// ~33 KiB (issue 15: 100,000 pods within 300 MiB).
//
// Most events change nothing that is kept (status, bookkeeping): same_text()
// tells them apart by size and a 128-bit hash of the text, without
// decompressing; only a real change reads the old text back (text()) to diff
// it, and stores the new one compressed (set_text()).
//
// Not thread-safe: owned by one informer (or the replay loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kubetrail {
class DictionaryCodec;
}

namespace kubetrail::model {

// One metadata.managedFields entry, without its field set: who wrote the
// object and when, for actor attribution.
struct ManagerEntry {
  std::string manager;
  std::string operation;    // "Update" or "Apply"
  std::string time;         // RFC 3339
  std::string subresource;  // "" or e.g. "status", "scale"
  bool operator==(const ManagerEntry&) const = default;
};

struct StoredObject {
  // The pruned, redacted, minified object. Inside an ObjectStore that packs,
  // a zstd frame of it (packed = true): read it through ObjectStore::text().
  std::string json;
  std::string uid;
  std::string resource_version;
  std::vector<ManagerEntry> managers;
  bool packed = false;
  uint32_t text_size = 0;          // of the text, packed or not
  uint64_t text_hash[2] = {0, 0};  // XXH3-128 of the text (packed only)
};

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
  // Stores `obj` (whose json is the text) under `key`, packed when the store packs.
  void put(std::string key, StoredObject obj);
  // Stores `obj` with `text` as its text (obj.json is overwritten): a
  // packing store compresses straight from `text`, without the object's
  // whole text being copied into a string of its own first (at 100k pods
  // that copy and its allocation were a quarter of the list's CPU).
  void put(std::string key, StoredObject obj, std::string_view text);
  void erase(std::string_view key) {
    last_ = nullptr;
    auto it = objects_.find(key);
    if (it != objects_.end()) objects_.erase(it);
  }
  size_t size() const noexcept { return objects_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [k, v] : objects_) f(k, v);
  }

  // The text of an object of this store. Valid until the next text() call
  // on this store or the object's next change.
  std::string_view text(const StoredObject& o) const;
  // The size and XXH3-128 of a text: how a packed object's text is told
  // apart from another without decompressing it.
  struct TextDigest {
    uint64_t hash[2];
    uint32_t size;
  };
  static TextDigest digest_of(std::string_view text) noexcept;
  // Whether the object's text is exactly `text`. `digest`, when given, is
  // set to `text`'s digest if this call computed one (a packed object of
  // the same size), for set_text() of the same text to reuse: an event that
  // changes an object hashed its 8 KB twice (perf: 5% of the watch thread).
  bool same_text(const StoredObject& o, std::string_view text, std::optional<TextDigest>* digest = nullptr) const;
  // Replaces the object's text (packed when the store packs). `digest`:
  // digest_of(text), if known.
  void set_text(StoredObject& o, std::string_view text, const std::optional<TextDigest>& digest = std::nullopt);
  // Bytes the stored texts hold in memory (capacity, packed or not), for
  // tests and benchmarks.
  size_t text_bytes() const;

  // Packs from now on against `dictionary` (content, as DictionaryCodec
  // takes it), every object held repacked: the state store's dictionary
  // for the resource, so that a save writes this store's frames as they
  // are instead of decompressing and compressing each changed object again.
  void pack_with(std::string_view dictionary);
  // DictionaryCodec::fingerprint() of the dictionary this store packs
  // with; 0 while it does not pack.
  uint64_t dictionary_fingerprint() const noexcept { return fingerprint_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, StoredObject, Hash, std::equal_to<>> objects_;
  std::unique_ptr<DictionaryCodec> codec_;  // once the store packs
  uint64_t fingerprint_ = 0;                // of codec_'s dictionary
  mutable std::string scratch_;             // text()'s output
  // The object last found, by its key: an event's uid check (replaced())
  // and its diff (observe()) look up the same object in turn, and at 100k
  // objects every lookup of the table misses the CPU cache. An element's
  // address survives rehashing; erase() forgets it.
  mutable std::string last_key_;
  mutable StoredObject* last_ = nullptr;
  StoredObject* lookup(std::string_view key) const {
    if (last_ && key == last_key_) return last_;
    auto it = objects_.find(key);
    if (it == objects_.end()) return nullptr;
    last_key_.assign(key);
    last_ = const_cast<StoredObject*>(&it->second);  // the store's own element; find() hands it out const
    return last_;
  }
  void start_packing();
};

}  // namespace kubetrail::model
