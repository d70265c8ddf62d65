#include "model/object_store.hpp"

#include <utility>

#include <xxhash.h>

#include "common/dictionary_codec.hpp"
#include "common/error.hpp"

namespace kubetrail::model {

namespace {
constexpr int64_t kDictionary = 1;  // the store's one dictionary

// Stores `text` in `o` as a frame against the store's dictionary, or as it
// is when the frame would be no smaller. `text` may be o.json itself: it is
// hashed and compressed before o.json is written. `digest`: the text's, if
// the caller has it.
void pack(DictionaryCodec& codec, StoredObject& o, std::string_view text,
          const std::optional<ObjectStore::TextDigest>& digest = std::nullopt) {
  const ObjectStore::TextDigest d = digest ? *digest : ObjectStore::digest_of(text);
  o.text_hash[0] = d.hash[0];
  o.text_hash[1] = d.hash[1];
  o.text_size = d.size;
  std::string_view frame = codec.compress(kDictionary, text);
  o.packed = frame.size() < text.size();
  if (o.packed && o.json.capacity() > 2 * frame.size())
    o.json = std::string(frame);  // a new string of the frame's size: assign() would keep the text's capacity
  else if (o.packed)
    o.json.assign(frame);
  else if (o.json.data() != text.data())
    o.json.assign(text);
}
}  // namespace

ObjectStore::ObjectStore() = default;
ObjectStore::~ObjectStore() = default;
// The moved-from store forgets its last lookup: the element now belongs to
// the other store.
ObjectStore::ObjectStore(ObjectStore&& o) noexcept
    : objects_(std::move(o.objects_)),
      codec_(std::move(o.codec_)),
      fingerprint_(std::exchange(o.fingerprint_, 0)),
      scratch_(std::move(o.scratch_)),
      last_key_(std::move(o.last_key_)),
      last_(std::exchange(o.last_, nullptr)) {}
ObjectStore& ObjectStore::operator=(ObjectStore&& o) noexcept {
  objects_ = std::move(o.objects_);
  codec_ = std::move(o.codec_);
  fingerprint_ = std::exchange(o.fingerprint_, 0);
  scratch_ = std::move(o.scratch_);
  last_key_ = std::move(o.last_key_);
  last_ = std::exchange(o.last_, nullptr);
  return *this;
}

void ObjectStore::put(std::string key, StoredObject obj) {
  if (codec_) {
    pack(*codec_, obj, obj.json);
  } else {
    obj.packed = false;
    obj.text_size = static_cast<uint32_t>(obj.json.size());
  }
  objects_.insert_or_assign(std::move(key), std::move(obj));
  if (!codec_ && objects_.size() >= kPackAfter) start_packing();
}

void ObjectStore::put(std::string key, StoredObject obj, std::string_view text) {
  if (codec_) {
    obj.json.clear();
    pack(*codec_, obj, text);
    objects_.insert_or_assign(std::move(key), std::move(obj));
    return;
  }
  obj.json.assign(text);
  put(std::move(key), std::move(obj));
}

// The dictionary is the first objects' own text (up to 64 KB): the rest of
// a resource's objects repeat their keys, labels, images and probes.
void ObjectStore::start_packing() {
  std::vector<std::string_view> samples;
  for (const auto& [key, o] : objects_) samples.push_back(o.json);
  pack_with(DictionaryCodec::dictionary_from(samples));
}

void ObjectStore::pack_with(std::string_view dictionary) {
  auto codec = std::make_unique<DictionaryCodec>();
  codec->add_dictionary(kDictionary, dictionary);
  std::string text;
  for (auto& [key, o] : objects_) {
    text.assign(this->text(o));  // against the dictionary it was packed with, if any
    pack(*codec, o, text);
    o.json.shrink_to_fit();
  }
  codec_ = std::move(codec);
  fingerprint_ = DictionaryCodec::fingerprint(dictionary);
}

std::string_view ObjectStore::text(const StoredObject& o) const {
  if (!o.packed) return o.json;
  // Frames this store wrote: they always decode (a failure is a bug, said loudly).
  if (std::string why = codec_->decompress(kDictionary, o.json, scratch_); !why.empty())
    throw Error("internal error: a cached object does not decompress: " + why);
  return scratch_;
}

ObjectStore::TextDigest ObjectStore::digest_of(std::string_view text) noexcept {
  XXH128_hash_t h = XXH3_128bits(text.data(), text.size());
  return TextDigest{{h.low64, h.high64}, static_cast<uint32_t>(text.size())};
}

bool ObjectStore::same_text(const StoredObject& o, std::string_view text, std::optional<TextDigest>* digest) const {
  if (!o.packed) return o.json == text;
  if (o.text_size != text.size()) return false;
  const TextDigest d = digest_of(text);
  if (digest) *digest = d;
  return d.hash[0] == o.text_hash[0] && d.hash[1] == o.text_hash[1];
}

void ObjectStore::set_text(StoredObject& o, std::string_view text, const std::optional<TextDigest>& digest) {
  if (codec_) {
    pack(*codec_, o, text, digest);
    return;
  }
  o.json.assign(text);
  o.packed = false;
  o.text_size = static_cast<uint32_t>(text.size());
}

size_t ObjectStore::text_bytes() const {
  size_t n = 0;
  for (const auto& [key, o] : objects_) n += o.json.capacity();  // what memory holds, not what is used
  return n;
}

}  // namespace kubetrail::model
