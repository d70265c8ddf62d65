// A list response from the API server: seeded as the initial list, then
// compared as a relist after a 410 (replaced(), observe(), forget()).
#include <atomic>

#include "fake_api.hpp"
#include "fuzz.hpp"
#include "watch/informer.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string page(fuzz::bytes(data, size));
  test::FakeClock clock;
  test::FakeApi api(clock);
  std::atomic<bool> stop{false};
  int lists = 0, watches = 0;
  api.on_get = [&](const std::string&) {
    if (++lists > 3) stop = true;
    return kube::Response{200, page, "application/json", {}, 0};
  };
  api.on_stream = [&](const std::string&, const std::function<bool(std::string_view)>&) {
    if (++watches > 1) stop = true;
    return kube::Response{410, R"({"kind":"Status","code":410})", {}, {}, 0};
  };
  clock.on_sleep = [&] {
    if (clock.sleeps.size() > 4) stop = true;
  };
  watch::InformerOptions opt;
  opt.type = {"apps", "v1", "deployments", "Deployment", true};
  opt.clock = &clock;
  watch::Informer informer(api, opt, "fuzz", {}, [](std::vector<model::ChangeSet>&& batch) {
    for (const auto& cs : batch) (void)cs.to_json();
  });
  informer.run(stop);
  return 0;
}
