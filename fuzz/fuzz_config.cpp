// A config file (TOML) as a user points kubetrail at it: a kubetrail::Error
// naming the file, line and key, or a config.
#include "common/error.hpp"
#include "config/config.hpp"
#include "fuzz.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    config::parse(fuzz::bytes(data, size), "fuzz.toml");
  } catch (const Error&) {
  }
  return 0;
}
