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
    if (config.find("not_yet") != std::string_view::npos) throw sdk::RetryableError("broker not up yet");
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
  CHECK_THROWS_WITH(
      host.create(kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR), R"({"explode":1})"),
      "bad config: explode");
  auto p = host.create(kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR));
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
  auto p = host.create(kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR));
  FakeChangeSet a, b;
  a.add_change(KUBETRAIL_OP_ADD, "a", "", "1");
  b.add_change(KUBETRAIL_OP_ADD, "b", "", "1");
  b.name = "partial";
  auto r = p.handle({&a, &b});
  CHECK(r.status == KUBETRAIL_RETRY);
  CHECK(r.item_status == std::vector<int32_t>{KUBETRAIL_OK, KUBETRAIL_RETRY});
}

// Before: the SDK had no accessors for actor, catchUp and the old/new
// objects (the ABI did not carry them; plugins parsed json()). ABI 1.1
// appends them; from a 1.0 host (shorter struct) they read as empty.
TEST_CASE("sdk: actor, catch_up and the objects are readable, and empty from an ABI 1.0 host") {
  FakeChangeSet fake;
  fake.type = KUBETRAIL_DELETED;
  fake.actor_manager = "kubectl";
  fake.actor_operation = "Apply";
  fake.actor_time = "2026-12-01T10:00:00Z";
  fake.catch_up = true;
  fake.old_object = R"({"kind":"Deployment"})";
  kubetrail::sdk::ChangeSet cs(fake.view());
  CHECK(cs.actor_manager() == "kubectl");
  CHECK(cs.actor_operation() == "Apply");
  CHECK(cs.actor_time() == "2026-12-01T10:00:00Z");
  CHECK(cs.catch_up());
  CHECK(cs.old_object_json() == R"({"kind":"Deployment"})");
  CHECK(cs.new_object_json().empty());

  kubetrail::sdk::ChangeSet old_host(kubetrail::sdk::testing::as_abi_1_0(fake));
  CHECK(old_host.name() == "web");  // 1.0 members still read
  CHECK(old_host.actor_manager().empty());
  CHECK_FALSE(old_host.catch_up());
  CHECK(old_host.old_object_json().empty());
}

// ABI 1.2 appends the snapshot members; a 1.1 host never sends a Snapshot
// and its shorter struct reads as no snapshot.
TEST_CASE("sdk: a Snapshot's type name and place in its snapshot, and nothing from an ABI 1.1 host") {
  FakeChangeSet fake;
  fake.type = KUBETRAIL_SNAPSHOT;
  fake.snapshot_id = "cmdb/2026-12-05T03:00:00.000Z";
  fake.snapshot_index = 3;
  fake.snapshot_total = 9;
  kubetrail::sdk::ChangeSet cs(fake.view());
  CHECK(cs.type() == kubetrail::sdk::ChangeType::snapshot);
  CHECK(cs.type_name() == "Snapshot");
  CHECK(cs.snapshot_id() == "cmdb/2026-12-05T03:00:00.000Z");
  CHECK(cs.snapshot_index() == 3);
  CHECK(cs.snapshot_total() == 9);
  kubetrail::sdk::ChangeSet old_host(kubetrail::sdk::testing::as_abi_1_1(fake));
  CHECK(old_host.snapshot_id().empty());
  CHECK(old_host.snapshot_total() == 0);
  CHECK(old_host.new_object_json() == cs.new_object_json());  // 1.1 members still read
}

// Before: RetryableError from a constructor was documented as transient but
// create() answered FAIL; now RETRY, and the host creates it again
// (test_plugin_host: "a create() that says RETRY is tried again").
TEST_CASE("sdk: RetryableError from the constructor makes create() answer RETRY with the message") {
  const kubetrail_plugin_descriptor* d = kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR);
  REQUIRE(d);
  std::string config = R"({"not_yet":1})";
  char buf[256] = {};
  kubetrail_error err{sizeof err, buf, sizeof buf};
  void* instance = nullptr;
  FakeHost host;
  CHECK(d->create(config.c_str(), config.size(), nullptr, nullptr, &instance, &err) == KUBETRAIL_RETRY);
  CHECK(instance == nullptr);
  CHECK(std::string(buf) == "broker not up yet");
  config = R"({"explode":1})";
  CHECK(d->create(config.c_str(), config.size(), nullptr, nullptr, &instance, &err) == KUBETRAIL_FAIL);
}
