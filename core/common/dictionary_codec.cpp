#include "common/dictionary_codec.hpp"

#include <xxhash.h>
#include <zdict.h>
#include <zstd.h>

#include <new>

namespace kubetrail {

namespace {
// With a dictionary doing most of the work, level 1 compresses a Pod as well
// as level 3 does, at a third of the time (measured on the Pod fixture).
constexpr int kLevel = 1;
// ZSTD_MAGIC_DICTIONARY, little endian: how a dictionary of zstd's own format
// starts (content that does not is raw content to zstd).
constexpr std::string_view kZstdDictionaryMagic("\x37\xA4\x30\xEC", 4);
}  // namespace

DictionaryCodec::DictionaryCodec() : cctx_(ZSTD_createCCtx()), dctx_(ZSTD_createDCtx()) {
  if (!cctx_ || !dctx_) {
    ZSTD_freeCCtx(cctx_);
    ZSTD_freeDCtx(dctx_);
    throw std::bad_alloc();
  }
  // Frames without the dictionary's id (4 bytes each: the caller knows
  // which dictionary a frame is against), with their content size
  // (decompress() needs it).
  ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, kLevel);
  ZSTD_CCtx_setParameter(cctx_, ZSTD_c_dictIDFlag, 0);
  ZSTD_CCtx_setParameter(cctx_, ZSTD_c_contentSizeFlag, 1);
}

DictionaryCodec::~DictionaryCodec() {
  for (auto& [id, d] : dictionaries_) {
    ZSTD_freeCDict(d.compress);
    ZSTD_freeDDict(d.decompress);
  }
  ZSTD_freeCCtx(cctx_);
  ZSTD_freeDCtx(dctx_);
}

std::string DictionaryCodec::dictionary_from(const std::vector<std::string_view>& samples) {
  std::string content;
  std::vector<size_t> sizes;  // of the samples in `content`, end to end: the tables are gathered from them
  for (auto s : samples) {
    if (content.size() + s.size() > kMaxDictionaryBytes) break;
    content.append(s);
    sizes.push_back(s.size());
  }
  std::string dictionary(content.size() + kMaxHeaderBytes, '\0');
  ZDICT_params_t params{};
  params.compressionLevel = kLevel;  // the tables of what this codec writes
  // A private id (zstd reserves those under 32768), the same for the same
  // content; frames do not carry it.
  params.dictID = static_cast<unsigned>(32768 + XXH3_64bits(content.data(), content.size()) % 0x7fff0000);
  const size_t n = ZDICT_finalizeDictionary(dictionary.data(), dictionary.size(), content.data(), content.size(),
                                            content.data(), sizes.data(), static_cast<unsigned>(sizes.size()), params);
  if (ZDICT_isError(n)) return content;  // e.g. samples too small to gather tables from
  dictionary.resize(n);
  return dictionary;
}

bool DictionaryCodec::is_zstd_format(std::string_view content) noexcept {
  return content.substr(0, 4) == kZstdDictionaryMagic;
}

uint64_t DictionaryCodec::fingerprint(std::string_view content) {
  // Never 0: 0 means "no dictionary" to the callers.
  return XXH3_64bits(content.data(), content.size()) | 1;
}

std::string DictionaryCodec::add_dictionary(int64_t id, std::string_view content) {
  remove_dictionary(id);
  // What dictionary_from() makes, or made before it wrote zstd's format:
  // JSON samples of at most kMaxDictionaryBytes, alone or behind zstd's
  // header. Anything else is not read - in particular no size a file may
  // claim is copied and hashed into zstd's tables.
  const bool zstd_format = is_zstd_format(content);
  if (content.size() > kMaxDictionaryBytes + (zstd_format ? kMaxHeaderBytes : 0))
    return std::to_string(content.size()) + " bytes, more than any dictionary kubetrail makes";
  if (!content.empty() && content.front() != '{' && !zstd_format) return "neither JSON samples nor zstd's format";
  Dictionary d;
  d.compress = ZSTD_createCDict(content.data(), content.size(), kLevel);
  d.decompress = d.compress ? ZSTD_createDDict(content.data(), content.size()) : nullptr;
  if (!d.compress || !d.decompress) {
    ZSTD_freeCDict(d.compress);
    ZSTD_freeDDict(d.decompress);
    // zstd says NULL both for a dictionary it refuses and for no memory;
    // only content in its own format can be refused (raw content is any bytes).
    if (zstd_format) return "starts as a zstd dictionary, which zstd does not read (its entropy tables are not valid)";
    throw std::bad_alloc();
  }
  dictionaries_.emplace(id, d);
  return {};
}

void DictionaryCodec::remove_dictionary(int64_t id) {
  auto it = dictionaries_.find(id);
  if (it == dictionaries_.end()) return;
  ZSTD_freeCDict(it->second.compress);
  ZSTD_freeDDict(it->second.decompress);
  dictionaries_.erase(it);
}

std::string_view DictionaryCodec::compress(int64_t id, std::string_view text) {
  const Dictionary& d = dictionaries_.at(id);
  buffer_.resize(ZSTD_compressBound(text.size()));
  ZSTD_CCtx_refCDict(cctx_, d.compress);  // a pointer set: its tables are not copied
  size_t n = ZSTD_compress2(cctx_, buffer_.data(), buffer_.size(), text.data(), text.size());
  if (ZSTD_isError(n)) throw std::bad_alloc();  // only on allocation failure: the bound always fits
  return {buffer_.data(), n};
}

std::string DictionaryCodec::decompress(int64_t id, std::string_view frame, std::string& out) {
  auto it = dictionaries_.find(id);
  if (it == dictionaries_.end()) return "compressed against dictionary " + std::to_string(id) + ", which is missing";
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR) return "not a zstd frame";
  if (size == ZSTD_CONTENTSIZE_UNKNOWN) return "a zstd frame without its size";
  if (size > kMaxObjectBytes) return "a zstd frame claiming " + std::to_string(size) + " bytes (more than any object)";
  out.resize(static_cast<size_t>(size));
  size_t n =
      ZSTD_decompress_usingDDict(dctx_, out.data(), out.size(), frame.data(), frame.size(), it->second.decompress);
  if (ZSTD_isError(n)) return std::string("zstd: ") + ZSTD_getErrorName(n);
  if (n != out.size()) return "a zstd frame shorter than it claims";
  return {};
}

}  // namespace kubetrail
