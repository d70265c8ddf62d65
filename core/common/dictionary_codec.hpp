// Small texts compressed against a dictionary of their own kind: each text
// is a zstd frame against a dictionary made of the first texts of the same
// resource (earlier objects of the same kind, whose keys, images, labels
// and probes the next object mostly repeats). A Pod of ~8 KB pruned becomes
// a few hundred bytes. The dictionary is in zstd's own format: that content
// and entropy tables gathered from the same samples, so that a frame
// starts from them instead of building its own (issue 15: a text's fixed
// cost was most of its compression - 17k instructions for a 536-byte change
// set, 10k with the tables). Dictionaries made before (raw content: the
// samples alone) are still read and used. Frames carry no dictionary id: the
// caller names the dictionary. Three users: the state store's rows and
// files (what it writes per object is what it costs), the informer's cache
// (model/object_store.hpp: what it holds per object is what 100,000 pods
// cost in memory), and the change history's rows (state/history.hpp).
//
// Frames read back are untrusted bytes (a state file is one a user points
// at): a frame that does not decode, names no known dictionary or claims
// more than kMaxObjectBytes is an error value, never a crash or a huge
// allocation.
//
// Not thread-safe: each user holds its own (the state store under its lock,
// each cache on its informer's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;
struct ZSTD_CDict_s;
struct ZSTD_DDict_s;

namespace kubetrail {

class DictionaryCodec {
 public:
  // Larger than any object the API server stores (etcd's limit is 1.5 MB).
  static constexpr size_t kMaxObjectBytes = size_t{64} << 20;
  // A dictionary holds at most this much sample content, and its
  // header (zstd's format: id, entropy tables) at most kMaxHeaderBytes.
  static constexpr size_t kMaxDictionaryBytes = 64 << 10;
  static constexpr size_t kMaxHeaderBytes = 4 << 10;

  DictionaryCodec();
  ~DictionaryCodec();
  DictionaryCodec(const DictionaryCodec&) = delete;
  DictionaryCodec& operator=(const DictionaryCodec&) = delete;

  // A dictionary from sample objects: the first ones, up to
  // kMaxDictionaryBytes, and the entropy tables of them all; the content
  // alone when zstd cannot make tables of them (too little content).
  // The same samples always make the same bytes.
  static std::string dictionary_from(const std::vector<std::string_view>& samples);
  // Whether `content` starts as a dictionary of zstd's format (else zstd
  // takes it as raw content).
  static bool is_zstd_format(std::string_view content) noexcept;
  // What names a dictionary's content across its users: two codecs whose
  // dictionaries have the same fingerprint write and read the same frames
  // (the cache's frame is what the state store writes: state_store.hpp).
  static uint64_t fingerprint(std::string_view content);
  // Makes dictionary `id` usable for compress() and decompress(); "" on
  // success, else why `content` is not taken - it may come from a file a
  // user points at: only what dictionary_from() makes (JSON samples, alone
  // or in zstd's format, within kMaxDictionaryBytes and kMaxHeaderBytes) is
  // read, and content in zstd's format may still be refused by zstd.
  // Throws std::bad_alloc only when memory runs out.
  [[nodiscard]] std::string add_dictionary(int64_t id, std::string_view content);
  void remove_dictionary(int64_t id);
  bool has_dictionary(int64_t id) const { return dictionaries_.count(id) != 0; }

  // `text` compressed against dictionary `id` (which must have been added).
  std::string_view compress(int64_t id, std::string_view text);
  // The text of a frame compressed against dictionary `id`, into `out`;
  // "" on success, else why it cannot be read.
  std::string decompress(int64_t id, std::string_view frame, std::string& out);

 private:
  struct Dictionary {
    ZSTD_CDict_s* compress = nullptr;
    ZSTD_DDict_s* decompress = nullptr;
  };
  std::map<int64_t, Dictionary> dictionaries_;
  ZSTD_CCtx_s* cctx_;
  ZSTD_DCtx_s* dctx_;
  std::string buffer_;  // compress()'s output, reused
};

}  // namespace kubetrail
