// A watch response from the API server, cut into chunks at arbitrary
// places, through the real informer: framer, parse, replaced(), observe(),
// the cache. The first byte picks the chunk size (1-64 bytes, or for a
// quarter of inputs the whole input at once, where the framer's 64-byte
// fast path runs). The framer alone is also checked against itself: the
// input whole must give the frames it gives fed one byte at a time (the
// exact path throughout), and so must the framer offering lines to a
// parser first (offer_lines(), as the informer does), whole and in the
// input's chunks; a difference aborts.
#include <atomic>
#include <cstdlib>
#include <vector>

#include <simdjson.h>

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

// The frames of `input` fed in pieces of `chunk` bytes, and whether it
// failed (at a feed or at the end); `lines`: with offer_lines() taking
// every line that parses, as the informer does.
std::vector<std::pair<std::string, uint64_t>> frames_of(std::string_view input, size_t chunk, bool& failed,
                                                        bool lines = false) {
  std::vector<std::pair<std::string, uint64_t>> frames;
  kube::JsonFramer framer(4096);
  auto on = [&](std::string_view f, uint64_t off) { frames.emplace_back(std::string(f), off); };
  simdjson::dom::parser parser;
  if (lines)
    framer.offer_lines([&](std::string_view line, uint64_t off) {
      simdjson::dom::element doc;
      if (parser.parse(std::string(line)).get(doc) != simdjson::SUCCESS) return false;
      on(line, off);
      return true;
    });
  failed = false;
  for (size_t at = 0; at < input.size() && !failed; at += chunk) failed = !framer.feed(input.substr(at, chunk), on);
  if (!failed) failed = !framer.finish(on);
  return frames;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view input = fuzz::bytes(data + 1, size - 1);
  size_t chunk = data[0] >= 192 ? input.size() + 1 : 1 + data[0] % 64;
  bool whole_failed = false, exact_failed = false, lines_failed = false;
  const auto exact = frames_of(input, 1, exact_failed);
  if (frames_of(input, input.size() + 1, whole_failed) != exact || whole_failed != exact_failed) std::abort();
  // Lines offered first, whole and in the input's chunks: the same frames.
  if (frames_of(input, input.size() + 1, lines_failed, true) != exact || lines_failed != exact_failed) std::abort();
  if (frames_of(input, chunk, lines_failed, true) != exact || lines_failed != exact_failed) std::abort();
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
