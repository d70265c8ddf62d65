// A watch response from the API server, cut into chunks at arbitrary
// places, through the real informer: framer, parse, replaced(), observe(),
// the cache. The first byte picks the chunk size.
#include <atomic>

#include "fake_api.hpp"
#include "fuzz.hpp"
#include "watch/informer.hpp"

using namespace kubetrail;

namespace {
const char kList[] =
    R"({"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[)"
    R"({"metadata":{"name":"a","namespace":"n","uid":"u1","resourceVersion":"5"},"data":{"k":"v"}},)"
    R"({"metadata":{"name":"b","namespace":"n","uid":"u2","resourceVersion":"6"},"spec":{"containers":[{"name":"x","env":[{"name":"","value":"1"}]}]}}]})";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 64;
  std::string_view input = fuzz::bytes(data + 1, size - 1);
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
  watch::Informer informer(api, opt, "fuzz", {}, [](model::ChangeSet&& cs) { (void)cs.to_json(); });
  informer.run(stop);
  return 0;
}
