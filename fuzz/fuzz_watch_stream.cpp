// A watch response from the API server, cut into chunks at arbitrary
// places, through the real informer: framer, parse, replaced(), observe(),
// the cache. The first byte picks the chunk size (1-64 bytes, or for a
// quarter of inputs the whole input at once, where the framer's 64-byte
// fast path runs). The framer alone is also checked against itself: the
// input whole must give the frames it gives fed one byte at a time (the
// exact path throughout); a difference aborts.
#include <atomic>
#include <cstdlib>
#include <vector>

#include "fake_api.hpp"
#include "fuzz.hpp"
#include "kube/watch_stream.hpp"
#include "watch/informer.hpp"

using namespace kubetrail;

namespace {
const char kList[] =
    R"({"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[)"
    R"({"metadata":{"name":"a","namespace":"n","uid":"u1","resourceVersion":"5"},"data":{"k":"v"}},)"
    R"({"metadata":{"name":"b","namespace":"n","uid":"u2","resourceVersion":"6"},"spec":{"containers":[{"name":"x","env":[{"name":"","value":"1"}]}]}}]})";

std::vector<std::pair<std::string, uint64_t>> frames_of(std::string_view input, size_t chunk, bool& failed) {
  std::vector<std::pair<std::string, uint64_t>> frames;
  kube::JsonFramer framer(4096);
  failed = false;
  for (size_t at = 0; at < input.size() && !failed; at += chunk)
    failed = !framer.feed(input.substr(at, chunk),
                          [&](std::string_view f, uint64_t off) { frames.emplace_back(std::string(f), off); });
  return frames;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view input = fuzz::bytes(data + 1, size - 1);
  size_t chunk = data[0] >= 192 ? input.size() + 1 : 1 + data[0] % 64;
  bool whole_failed = false, exact_failed = false;
  if (frames_of(input, input.size() + 1, whole_failed) != frames_of(input, 1, exact_failed) ||
      whole_failed != exact_failed)
    std::abort();
  test::FakeClock clock;
  test::FakeApi api(clock);
  std::atomic<bool> stop{false};
  api.on_get = [](const std::string&) { return kube::Response{200, kList, "application/json", {}, 0}; };
  api.on_stream = [&](const std::string&, const std::function<bool(std::string_view)>& on_data) {
    for (size_t at = 0; at < input.size(); at += chunk)
      if (!on_data(input.substr(at, chunk))) break;
    stop = true;
    return kube::Response{200, {}, {}, {}, 0};
  };
  clock.on_sleep = [&] { stop = true; };
  watch::InformerOptions opt;
  opt.type = {"", "v1", "configmaps", "ConfigMap", true};
  opt.clock = &clock;
  opt.max_event_bytes = 1 << 20;
  watch::Informer informer(api, opt, "fuzz", {}, [](std::vector<model::ChangeSet>&& batch) {
    for (const auto& cs : batch) (void)cs.to_json();
  });
  informer.run(stop);
  return 0;
}
