// A kubeconfig file: a kubetrail::Error naming the file, or a connection.
#include "common/error.hpp"
#include "fuzz.hpp"
#include "kube/kubeconfig.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = fuzz::as_file(fuzz::bytes(data, size), ".kubeconfig");
  try {
    kube::load_kubeconfig({path}, "");
  } catch (const Error&) {
  }
  return 0;
}
