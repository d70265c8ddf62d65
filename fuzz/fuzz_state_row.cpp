// A checkpoint row read back from the state store (common/dictionary_codec.hpp):
// the file is one a user points at, so a row may hold anything. Input: two
// bytes (little endian) of dictionary length, the dictionary, then the row.
// Decoding may only fail as an error value - never crash, hang or allocate
// more than DictionaryCodec::kMaxObjectBytes - and whatever compress() writes with
// that dictionary must decode back to the same text.
#include <cstring>

#include "common/dictionary_codec.hpp"
#include "fuzz.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::bytes(data, size);
  if (in.size() < 2) return 0;
  size_t dict_len = std::min<size_t>(in.size() - 2, static_cast<uint8_t>(in[0]) | static_cast<uint8_t>(in[1]) << 8);
  std::string_view dictionary = in.substr(2, dict_len), row = in.substr(2 + dict_len);
  DictionaryCodec codec;
  // One zstd refuses (its own format, tables that do not read) is an error value.
  const bool loaded = codec.add_dictionary(7, dictionary).empty();
  std::string out;
  std::string why = codec.decompress(7, row, out);
  if (why.empty() && out.size() > DictionaryCodec::kMaxObjectBytes) __builtin_trap();
  (void)codec.decompress(8, row, out);  // a dictionary the store does not have
  if (!loaded) return 0;
  std::string back;
  std::string_view frame = codec.compress(7, row);
  if (!codec.decompress(7, std::string(frame), back).empty() || back != row) __builtin_trap();
  return 0;
}
