// The SDK seen from a plugin author's side: a plugin class, the export macro,
// and the fake host. The plugin here is compiled into the test binary.
#include <doctest/doctest.h>

#include <kubetrail/sdk.hpp>
#include <kubetrail/sdk_testing.hpp>

namespace sdk = kubetrail::sdk;

namespace {

class Probe : public sdk::Plugin {
 public:
  Probe(std::string_view config, sdk::Host host) : sdk::Plugin(host) {
    if (config.find("explode") != std::string_view::npos) throw std::runtime_error("bad config: explode");
    seen_ = host.define_metric(sdk::MetricKind::counter, "probe_seen_total", "seen");
  }
  sdk::Result handle(const sdk::Batch& batch) override {
    sdk::Result r;
    for (const auto& cs : batch) {
      host().record(seen_, 1);
      host().log(sdk::LogLevel::info, std::string(cs.type_name()) + " " + std::string(cs.name()) + " " +
                                          std::to_string(cs.change_count()) + " " + std::string(cs.change(0).path()));
      if (cs.name() == "throw") throw std::logic_error("boom");
      if (cs.name() == "retry") throw sdk::RetryableError("busy", 1500);
      if (cs.name() == "partial") {
        r.status = sdk::Status::retry;
        r.item_status = {sdk::Status::ok, sdk::Status::retry};
      }
    }
    return r;
  }

 private:
  int32_t seen_;
};

}  // namespace

KUBETRAIL_PLUGIN(Probe, "probe", "1.2.3", "test plugin", nullptr)

using kubetrail::sdk::testing::FakeChangeSet;
using kubetrail::sdk::testing::FakeHost;

TEST_CASE("sdk: the macro's entry refuses other ABI majors and fills the descriptor") {
  CHECK(kubetrail_plugin_entry_v1(2, 0) == nullptr);
  auto* d = kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR);
  REQUIRE(d);
  CHECK(d->struct_size == sizeof(kubetrail_plugin_descriptor));
  CHECK(std::string(d->name) == "probe");
  CHECK(std::string(d->version) == "1.2.3");
  CHECK(d->config_schema == nullptr);
}

TEST_CASE("sdk: views, logging and metrics through the fake host") {
  FakeHost host;
  auto p = host.create(kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR));
  FakeChangeSet cs;
  cs.add_change(KUBETRAIL_OP_REPLACE, "spec.replicas", "2", "3");
  auto r = p.handle({&cs});
  CHECK(r.status == KUBETRAIL_OK);
  REQUIRE(host.logs.size() == 1);
  CHECK(host.logs[0].text == "Modified web 1 spec.replicas");
  CHECK(host.metric_values["probe_seen_total"] == 1);
}

TEST_CASE("sdk: exceptions become FAIL or RETRY with the message, never cross the ABI") {
  FakeHost host;
  CHECK_THROWS_WITH(host.create(kubetrail_plugin_entry_v1(1, 0), R"({"explode":1})"), "bad config: explode");
  auto p = host.create(kubetrail_plugin_entry_v1(1, 0));
  FakeChangeSet cs;
  cs.add_change(KUBETRAIL_OP_ADD, "a", "", "1");
  cs.name = "throw";
  auto r = p.handle({&cs});
  CHECK(r.status == KUBETRAIL_FAIL);
  CHECK(r.message == "boom");
  cs.name = "retry";
  r = p.handle({&cs});
  CHECK(r.status == KUBETRAIL_RETRY);
  CHECK(r.retry_after_ms == 1500);
  CHECK(r.message == "busy");
}

TEST_CASE("sdk: per-item results reach the host") {
  FakeHost host;
  auto p = host.create(kubetrail_plugin_entry_v1(1, 0));
  FakeChangeSet a, b;
  a.add_change(KUBETRAIL_OP_ADD, "a", "", "1");
  b.add_change(KUBETRAIL_OP_ADD, "b", "", "1");
  b.name = "partial";
  auto r = p.handle({&a, &b});
  CHECK(r.status == KUBETRAIL_RETRY);
  CHECK(r.item_status == std::vector<int32_t>{KUBETRAIL_OK, KUBETRAIL_RETRY});
}
