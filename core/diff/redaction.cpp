#include "diff/redaction.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/error.hpp"

namespace kubetrail::diff {

std::string redacted_marker(std::string_view key, std::string_view value) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(value.data()),
       value.size(), digest, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "<redacted hmac:";
  for (int i = 0; i < 4; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xf]);
  }
  out.push_back('>');
  return out;
}

std::string random_redaction_key() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1)
    throw Error("cannot draw a random redaction key (OpenSSL RAND_bytes failed)");
  return key;
}

}  // namespace kubetrail::diff
