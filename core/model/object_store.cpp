#include "model/object_store.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/dictionary_codec.hpp"
#include "common/error.hpp"

namespace kubetrail::model {

namespace {
constexpr int64_t kDictionary = 1;  // the store's one dictionary

// `bytes` into the arena slot at `slot` (of `size` bytes): written in place
// when it fits the slot's class, else into a new slot; none when empty.
void assign_slot(FrameArena& arena, char*& slot, uint32_t& size, std::string_view bytes) {
  const auto n = static_cast<uint32_t>(bytes.size());
  if (slot && (n == 0 || !FrameArena::same_slot(size, n))) {
    arena.release(slot, size);
    slot = nullptr;
    size = 0;
  }
  if (n == 0) return;
  if (!slot) slot = arena.allocate(n);  // may throw: then no slot, size 0
  size = n;
  std::memcpy(slot, bytes.data(), n);
}

// The managers as the arena keeps them: their count, then each one's four
// strings, each a LEB128 length and its bytes. Three entries of a Pod take
// ~130 bytes in one slot, against ~530 in nine allocations as strings.
void put_length(std::string& out, size_t n) {
  for (; n >= 0x80; n >>= 7) out.push_back(static_cast<char>((n & 0x7f) | 0x80));
  out.push_back(static_cast<char>(n));
}
size_t take_length(std::string_view& in) {
  size_t n = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    // Bytes this store encoded: running out is a bug, said loudly.
    if (in.empty()) throw Error("internal error: a cached object's managers do not decode");
    const auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    n |= static_cast<size_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return n;
  }
  throw Error("internal error: a cached object's managers do not decode");
}
void encode(const std::vector<ManagerEntry>& managers, std::string& out) {
  out.clear();
  if (managers.empty()) return;
  put_length(out, managers.size());
  for (const ManagerEntry& m : managers)
    for (const std::string* part : {&m.manager, &m.operation, &m.time, &m.subresource}) {
      put_length(out, part->size());
      out.append(*part);
    }
}
void decode(std::string_view in, std::vector<ManagerEntry>& out) {
  const size_t count = in.empty() ? 0 : take_length(in);
  if (count > in.size()) throw Error("internal error: a cached object's managers do not decode");
  out.resize(count);
  for (ManagerEntry& m : out)
    for (std::string* part : {&m.manager, &m.operation, &m.time, &m.subresource}) {
      const size_t n = take_length(in);
      if (n > in.size()) throw Error("internal error: a cached object's managers do not decode");
      part->assign(in.substr(0, n));
      in.remove_prefix(n);
    }
}
}  // namespace

// `text` may be o.json itself: it is compressed before o.json is written.
void ObjectStore::pack(DictionaryCodec& codec, StoredObject& o, std::string_view text) {
  scratch_frame_ = nullptr;  // o's slot may be rewritten in place
  o.text_size = static_cast<uint32_t>(text.size());
  const std::string_view frame = codec.compress(kDictionary, text);
  const bool smaller = frame.size() < text.size();
  o.packed = false;  // until the frame is in its slot
  assign_slot(arena_, o.frame, o.frame_size, smaller ? frame : std::string_view());
  o.packed = smaller;
  if (o.packed)
    std::string().swap(o.json);  // the text's memory goes back (`text` was compressed above)
  else if (o.json.data() != text.data())
    o.json.assign(text);
}

void ObjectStore::pack_managers(StoredObject& o, const std::vector<ManagerEntry>& managers) {
  encode(managers, managers_code_);  // before o.managers goes: `managers` may be it
  assign_slot(arena_, o.managers_code, o.managers_code_size, managers_code_);
  if (o.managers.capacity()) std::vector<ManagerEntry>().swap(o.managers);
}

const std::vector<ManagerEntry>& ObjectStore::managers(const StoredObject& o) const {
  if (!o.managers_code) return o.managers;
  decode({o.managers_code, o.managers_code_size}, managers_scratch_);
  return managers_scratch_;
}

void ObjectStore::set_managers(StoredObject& o, const std::vector<ManagerEntry>& managers) {
  if (codec_)
    pack_managers(o, managers);
  else
    o.managers = managers;
}

namespace {
// What a store's arena holds for `o` forgotten (for an object from outside:
// a store's objects are never handed out by value, so no slot is its).
void forget_slots(StoredObject& o) noexcept {
  o.frame = o.managers_code = nullptr;
  o.frame_size = o.managers_code_size = 0;
}
}  // namespace

void ObjectStore::release(StoredObject& o) noexcept {
  scratch_frame_ = nullptr;  // the slot may come back holding another text
  arena_.release(o.frame, o.frame_size);
  arena_.release(o.managers_code, o.managers_code_size);
  forget_slots(o);
}

ObjectStore::ObjectStore() = default;
ObjectStore::~ObjectStore() = default;
// The moved-from store forgets its last lookup: the element now belongs to
// the other store.
ObjectStore::ObjectStore(ObjectStore&& o) noexcept
    : objects_(std::move(o.objects_)),
      arena_(std::move(o.arena_)),
      codec_(std::move(o.codec_)),
      fingerprint_(std::exchange(o.fingerprint_, 0)),
      scratch_(std::move(o.scratch_)),
      scratch_frame_(std::exchange(o.scratch_frame_, nullptr)),
      last_key_(std::move(o.last_key_)),
      last_(std::exchange(o.last_, nullptr)) {}
ObjectStore& ObjectStore::operator=(ObjectStore&& o) noexcept {
  objects_ = std::move(o.objects_);  // before the arena: the objects it replaces had their frames there
  arena_ = std::move(o.arena_);
  codec_ = std::move(o.codec_);
  fingerprint_ = std::exchange(o.fingerprint_, 0);
  scratch_ = std::move(o.scratch_);
  scratch_frame_ = std::exchange(o.scratch_frame_, nullptr);
  last_key_ = std::move(o.last_key_);
  last_ = std::exchange(o.last_, nullptr);
  return *this;
}

void ObjectStore::put(std::string key, StoredObject obj) {
  forget_slots(obj);
  if (codec_) {
    pack(*codec_, obj, obj.json);
    pack_managers(obj, obj.managers);
  } else {
    obj.packed = false;
    obj.text_size = static_cast<uint32_t>(obj.json.size());
  }
  replace(std::move(key), std::move(obj));
  if (!codec_ && objects_.size() >= kPackAfter) start_packing();
}

void ObjectStore::put(std::string key, StoredObject obj, std::string_view text,
                      const std::vector<ManagerEntry>* managers) {
  if (codec_) {
    forget_slots(obj);
    obj.json.clear();
    pack(*codec_, obj, text);
    pack_managers(obj, managers ? *managers : obj.managers);
    replace(std::move(key), std::move(obj));
    return;
  }
  if (managers) obj.managers = *managers;
  obj.json.assign(text);
  put(std::move(key), std::move(obj));
}

void ObjectStore::replace(std::string key, StoredObject obj) {
  auto [o, added] = objects_.try_emplace(key);
  if (!added) release(*o);
  *o = std::move(obj);
}

// The dictionary is the first objects' own text (up to 64 KB): the rest of
// a resource's objects repeat their keys, labels, images and probes. Taken
// in key order, not the table's (which follows a hash keyed anew in each
// process, common/keyed_hash.hpp): the same objects make the same
// dictionary, and so the same frames and sizes, in every run.
void ObjectStore::start_packing() {
  std::vector<std::pair<std::string_view, std::string_view>> objects;  // (key, text)
  objects.reserve(objects_.size());
  objects_.for_each([&](std::string_view key, const StoredObject& o) { objects.emplace_back(key, o.json); });
  std::sort(objects.begin(), objects.end());
  std::vector<std::string_view> samples;
  samples.reserve(objects.size());
  for (const auto& [key, text] : objects) samples.push_back(text);
  pack_with(DictionaryCodec::dictionary_from(samples));
}

void ObjectStore::pack_with(std::string_view dictionary) {
  auto codec = std::make_unique<DictionaryCodec>();
  // The store's or its own: a dictionary zstd refuses never gets here (the
  // state store leaves such a one out), and if one did the objects stay as
  // they are packed.
  if (!codec->add_dictionary(kDictionary, dictionary).empty()) return;
  std::string text;
  objects_.for_each([&](std::string_view, StoredObject& o) {
    text.assign(this->text(o));  // against the dictionary it was packed with, if any
    pack(*codec, o, text);
    if (!o.packed) o.json.shrink_to_fit();
    if (!o.managers_code) pack_managers(o, o.managers);
  });
  codec_ = std::move(codec);
  fingerprint_ = DictionaryCodec::fingerprint(dictionary);
}

std::string_view ObjectStore::text(const StoredObject& o) const {
  if (!o.packed) return o.json;
  if (o.frame == scratch_frame_) return scratch_;
  scratch_frame_ = nullptr;  // until scratch_ holds its text
  // Frames this store wrote: they always decode (a failure is a bug, said loudly).
  if (std::string why = codec_->decompress(kDictionary, frame(o), scratch_); !why.empty())
    throw Error("internal error: a cached object does not decompress: " + why);
  scratch_frame_ = o.frame;
  return scratch_;
}

bool ObjectStore::same_text(const StoredObject& o, std::string_view text) const {
  if (!o.packed) return o.json == text;
  return o.text_size == text.size() && this->text(o) == text;
}

void ObjectStore::set_text(StoredObject& o, std::string_view text) {
  if (codec_) {
    pack(*codec_, o, text);
    return;
  }
  o.json.assign(text);
  o.packed = false;
  o.text_size = static_cast<uint32_t>(text.size());
}

size_t ObjectStore::text_bytes() const {
  size_t n = 0;
  // What memory holds, not what is used.
  objects_.for_each([&](std::string_view, const StoredObject& o) {
    n += o.packed ? FrameArena::slot_bytes(o.frame_size) : o.json.capacity();
  });
  return n;
}

}  // namespace kubetrail::model
