// Inventory mode (issue 18, item 3): the pieces below `kubetrail run` and
// `kubetrail snapshot` - the list a snapshot is taken from, the Snapshot
// change set and its JSON, which objects a handler's routes take, the
// config key, and where the last snapshot's time survives a restart. The
// whole path runs end to end in tests/integration/test_run.py.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "diff/diff.hpp"
#include "fake_api.hpp"
#include "helpers.hpp"
#include "route/route.hpp"
#include "state/state_store.hpp"
#include "watch/inventory.hpp"

using namespace kubetrail;
using nlohmann::json;

namespace {

json configmap(const std::string& ns, const std::string& name, const std::string& value, int rv) {
  return {{"metadata",
           {{"name", name},
            {"namespace", ns},
            {"uid", "u-" + ns + "-" + name},
            {"resourceVersion", std::to_string(rv)},
            {"managedFields", json::array({{{"manager", "kubectl"}, {"operation", "Update"}}})}}},
          {"data", {{"v", value}}}};
}

// (Callers pass json::array(...): `{one}` would copy-construct the one object.)
kube::Response page(const json& items, const std::string& cont = "") {
  json list = {{"kind", "ConfigMapList"}, {"apiVersion", "v1"}, {"metadata", {{"resourceVersion", "900"}}}};
  if (!cont.empty()) list["metadata"]["continue"] = cont;
  list["items"] = items;
  return kube::Response{200, list.dump(), "application/json", "", 0};
}

const model::ResourceType kConfigMaps{"", "v1", "configmaps", "ConfigMap", true};

}  // namespace

TEST_CASE("inventory: a resource's snapshot lists every page in scope, pruned and redacted, sorted") {
  test::FakeClock clock;
  test::FakeApi api(clock);
  api.on_get = [](const std::string& path) {
    if (path.find("continue=") == std::string::npos)
      return page(json::array({configmap("shop", "b", "1", 5), configmap("kube-system", "k", "1", 6)}), "next");
    return page(json::array(
        {configmap("shop", "a", "2", 7), {{"metadata", {{"namespace", "shop"}}}}}));  // the last has no name
  };
  model::DiffOptions opt;
  opt.field_paths = {"data.v"};
  diff::ChangeDetector detector("prod", opt);
  std::atomic<bool> stop{false};
  watch::ResourceSnapshot snap(api, detector, kConfigMaps, watch::ListScope{"", {"kube-system"}, "tier=web", ""}, stop,
                               2);
  // The informers' request: selectors, excluded namespaces as a field
  // selector, pages of `limit`, then `continue`.
  REQUIRE(api.calls.size() == 2);
  CHECK(api.calls[0].path ==
        "/api/v1/configmaps?labelSelector=tier%3Dweb&fieldSelector=metadata.namespace%21%3Dkube-system&limit=2");
  CHECK(api.calls[1].path.ends_with("&limit=2&continue=next"));
  // kube-system is dropped even from a server that ignored the selector;
  // the object without a name is skipped and counted, not fatal.
  CHECK(snap.keys() == std::vector<std::string>{"shop/a", "shop/b"});
  CHECK(snap.skipped() == 1);
  model::ChangeSet a = snap.item("shop/a");
  CHECK(a.type == model::ChangeType::snapshot);
  CHECK(a.cluster == "prod");
  CHECK(a.uid == "u-shop-a");
  CHECK(a.resource_version == "7");
  CHECK(a.observed_at == snap.listed_at());
  CHECK(json::parse(a.new_object)["data"] == json{{"v", "2"}});
  CHECK(!json::parse(a.new_object)["metadata"].contains("managedFields"));  // pruned as the cache keeps it
  CHECK(a.fields == std::vector<std::pair<std::string, std::string>>{{"data.v", "2"}});
  CHECK(a.changes.empty());
}

TEST_CASE("inventory: a Secret's values never leave in a snapshot") {
  test::FakeClock clock;
  test::FakeApi api(clock);
  api.on_get = [](const std::string&) {
    json s = {{"metadata", {{"name", "db"}, {"namespace", "shop"}, {"uid", "s1"}, {"resourceVersion", "3"}}},
              {"data", {{"password", "aHVudGVyMg=="}}}};
    return page(json::array({s}));
  };
  model::DiffOptions opt;
  opt.redaction_key = "k";
  diff::ChangeDetector detector("prod", opt);
  std::atomic<bool> stop{false};
  watch::ResourceSnapshot snap(api, detector, model::ResourceType{"", "v1", "secrets", "Secret", true},
                               watch::ListScope{}, stop);
  auto cs = snap.item("shop/db");
  CHECK(cs.new_object.find("aHVudGVyMg==") == std::string::npos);
  CHECK(cs.new_object.find("<redacted") != std::string::npos);
}

TEST_CASE("inventory: an expired continue token starts the snapshot's list over, so it is one moment") {
  test::FakeClock clock;
  test::FakeApi api(clock);
  int lists = 0;
  api.on_get = [&](const std::string& path) {
    if (path.find("continue=") == std::string::npos) {
      ++lists;
      return page(json::array({configmap("shop", "a", lists == 1 ? "old" : "new", lists)}), "next");
    }
    if (lists == 1) return kube::Response{410, R"({"kind":"Status","code":410})", "application/json", "", 0};
    return page(json::array({configmap("shop", "b", "1", 9)}));
  };
  diff::ChangeDetector detector("prod", {});
  std::atomic<bool> stop{false};
  watch::ResourceSnapshot snap(api, detector, kConfigMaps, {}, stop);
  CHECK(lists == 2);
  CHECK(snap.keys() == std::vector<std::string>{"shop/a", "shop/b"});
  CHECK(json::parse(snap.item("shop/a").new_object)["data"]["v"] == "new");
}

TEST_CASE("inventory: a failed or malformed list is an error naming the resource") {
  test::FakeClock clock;
  test::FakeApi api(clock);
  diff::ChangeDetector detector("prod", {});
  std::atomic<bool> stop{false};
  api.on_get = [](const std::string&) {
    return kube::Response{403, R"({"kind":"Status","message":"configmaps is forbidden"})", "application/json", "", 0};
  };
  CHECK_THROWS_WITH_AS(watch::ResourceSnapshot(api, detector, kConfigMaps, {"shop", {}, "", ""}, stop),
                       doctest::Contains("configmaps in shop: snapshot list failed"), Error);
  api.on_get = [](const std::string&) { return kube::Response{200, "{\"items\": [", "application/json", "", 0}; };
  CHECK_THROWS_WITH_AS(watch::ResourceSnapshot(api, detector, kConfigMaps, {}, stop),
                       doctest::Contains("configmaps: snapshot list failed: the answer is not JSON"), Error);
  // JSON, but no list (a proxy's page answering 200): it was an empty
  // snapshot, telling the receiver that nothing exists (failed before).
  for (const char* answer : {R"({"status":"ok"})", "[]", R"({"kind":"ConfigMapList","items":{}})"}) {
    api.on_get = [&](const std::string&) { return kube::Response{200, answer, "application/json", "", 0}; };
    CHECK_THROWS_WITH_AS(watch::ResourceSnapshot(api, detector, kConfigMaps, {}, stop),
                         doctest::Contains("configmaps: snapshot list failed: the answer is not a list"), Error);
  }
  api.on_get = [](const std::string& path) {
    return page(json::array({configmap("shop", "a", "1", 1)}), "more-" + path);
  };
  stop = true;  // a server that never ends its list: stopped between pages
  CHECK_THROWS_WITH_AS(watch::ResourceSnapshot(api, detector, kConfigMaps, {}, stop),
                       doctest::Contains("snapshot stopped"), Error);
}

// An object nested 2,000 deep (kube-apiserver accepts 10,000) failed its
// page's parse: the snapshot failed, and was taken again a minute later,
// for ever (failed before: "snapshot list answer is not a JSON object", as
// the message was then).
// Now it is skipped and counted like any object that cannot be handled.
TEST_CASE("inventory: an object nested too deep is skipped, and the snapshot holds the rest") {
  test::FakeClock clock;
  test::FakeApi api(clock);
  api.on_get = [](const std::string&) {
    const std::string deep = R"({"metadata":{"name":"a","namespace":"shop","uid":"u-a","resourceVersion":"3"},)"
                             R"("data":{"v":)" +
                             std::string(2000, '[') + std::string(2000, ']') + "}}";
    return kube::Response{200,
                          R"({"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[)" +
                              deep + "," + configmap("shop", "b", "1", 5).dump() + "]}",
                          "application/json", "", 0};
  };
  diff::ChangeDetector detector("prod", {});
  std::atomic<bool> stop{false};
  watch::ResourceSnapshot snap(api, detector, kConfigMaps, {}, stop);
  CHECK(snap.keys() == std::vector<std::string>{"shop/b"});
  CHECK(snap.skipped() == 1);
}

TEST_CASE("inventory: a Snapshot change set's JSON, id and summary, and its way back from the outbox") {
  model::ChangeSet cs;
  cs.type = model::ChangeType::snapshot;
  cs.cluster = "prod";
  cs.observed_at = "2026-12-05T03:00:00.000Z";
  cs.resource = model::resource_type_for("apps/v1", "Deployment");
  cs.object_namespace = "shop";
  cs.name = "web";
  cs.uid = "u-1";
  cs.resource_version = "42";
  cs.new_object = R"({"spec":{"replicas":3}})";
  cs.snapshot = model::SnapshotInfo{"cmdb/2026-12-05T03:00:00.000Z", "cmdb", 2, 5};
  cs.id = model::snapshot_item_id(cs.cluster, cs.uid, cs.object_namespace, cs.name, cs.snapshot->id);
  cs.summary = model::summarize(cs);
  CHECK(cs.id == "prod/u-1/snapshot/cmdb/2026-12-05T03:00:00.000Z");
  CHECK(model::snapshot_item_id("prod", "", "shop", "web", "x") == "prod/shop/web/snapshot/x");
  CHECK(cs.summary == "Deployment shop/web exists (inventory 2 of 5)");
  CHECK(cs.to_json() == cs.to_json_checked());
  auto back = model::ChangeSet::from_json(cs.to_json());
  CHECK(back.type == model::ChangeType::snapshot);
  CHECK(back.snapshot == cs.snapshot);
  CHECK(back.to_json() == cs.to_json());
  // Printed by `kubetrail snapshot`: no handler, and none in the JSON.
  cs.snapshot->handler.clear();
  CHECK(!json::parse(cs.to_json())["snapshot"].contains("handler"));
  CHECK(model::ChangeSet::from_json(cs.to_json()).snapshot == cs.snapshot);
  // A Snapshot without its snapshot is not one kubetrail wrote.
  auto j = json::parse(cs.to_json());
  j.erase("snapshot");
  CHECK_THROWS_WITH_AS(model::ChangeSet::from_json(j.dump()), doctest::Contains("without its snapshot id"), Error);
}

TEST_CASE("inventory: a handler's snapshot holds what its routes take, and only its inventory route takes a Snapshot") {
  auto cfg = config::parse(R"(
[[handlers]]
name = "cmdb"
plugin = "log"
inventory_every = "6h"
[[handlers]]
name = "chat"
plugin = "log"
[[routes]]
name = "shop deployments"
match = { resources = ["deployments"], namespaces = ["shop"], types = ["Deleted"], paths = ["spec.replicas"] }
chain = ["chat", "cmdb"]
[[routes]]
name = "warnings"
match = { resources = ["events"], where = { type = "Warning" } }
chain = ["cmdb"]
[[routes]]
name = "everything"
chain = ["chat"]
)",
                           "kubetrail.toml");
  CHECK(cfg.handlers[0].inventory_every == std::chrono::hours(6));
  route::Router router(cfg.routes, {"cmdb", "chat"});
  model::ChangeSet dep;
  dep.type = model::ChangeType::snapshot;
  dep.resource = model::resource_type_for("apps/v1", "Deployment");
  dep.object_namespace = "shop";
  dep.name = "web";
  // types and paths narrow changes, not a snapshot of whole objects.
  CHECK(router.takes("cmdb", dep));
  dep.object_namespace = "other";
  CHECK_FALSE(router.takes("cmdb", dep));
  CHECK(router.takes("chat", dep));  // its route without match takes everything
  model::ChangeSet event;
  event.type = model::ChangeType::snapshot;
  event.resource = model::resource_type_for("v1", "Event");
  event.object_namespace = "shop";
  event.fields = {{"type", "Normal"}};
  CHECK_FALSE(router.takes("cmdb", event));
  event.fields = {{"type", "Warning"}};
  CHECK(router.takes("cmdb", event));
  // The count a snapshot takes first decides without the object wherever
  // no `where` must read it (it built every object's change set twice), and
  // agrees with takes() wherever it decides.
  const auto deployment = model::resource_type_for("apps/v1", "Deployment");
  const auto events = model::resource_type_for("v1", "Event");
  const auto configmap = model::resource_type_for("v1", "ConfigMap");
  CHECK(router.takes_at("cmdb", deployment, "shop") == std::optional<bool>(true));
  CHECK(router.takes_at("cmdb", deployment, "other") == std::optional<bool>(false));
  CHECK(router.takes_at("cmdb", configmap, "shop") == std::optional<bool>(false));
  CHECK_FALSE(router.takes_at("cmdb", events, "shop").has_value());  // its `where` reads the object
  CHECK(router.takes_at("chat", configmap, "") == std::optional<bool>(true));
  for (const auto& type : {deployment, events, configmap})
    for (const char* ns : {"shop", "other", ""})
      for (const char* field : {"Warning", "Normal"})
        for (const char* handler : {"cmdb", "chat", "nobody"}) {
          model::ChangeSet cs;
          cs.type = model::ChangeType::snapshot;
          cs.resource = type;
          cs.object_namespace = ns;
          cs.fields = {{"type", field}};
          INFO(handler << " " << type.qualified_name() << " in '" << ns << "' " << field);
          if (auto decided = router.takes_at(handler, type, ns)) CHECK(*decided == router.takes(handler, cs));
        }
  // What to list for cmdb: deployments and events, not configmaps.
  CHECK(router.may_take("cmdb", dep.resource));
  CHECK(router.may_take("cmdb", event.resource));
  CHECK_FALSE(router.may_take("cmdb", model::resource_type_for("v1", "ConfigMap")));
  CHECK(router.may_take("chat", model::resource_type_for("v1", "ConfigMap")));

  // Delivery: a Snapshot goes down its handler's inventory route alone -
  // never down "everything" or to the other handler of a chain.
  dep.snapshot = model::SnapshotInfo{"cmdb/t", "cmdb", 1, 1};
  auto routes = router.match(dep);
  REQUIRE(routes.size() == 1);
  CHECK(routes[0]->name == "inventory/cmdb");
  CHECK(routes[0]->chain == std::vector<std::string>{"cmdb"});
  CHECK(router.find("inventory/cmdb") == routes[0]);  // found again by name from the outbox
  dep.snapshot->handler = "gone";
  CHECK(router.match(dep).empty());
  // And a change never takes an inventory route.
  model::ChangeSet added = dep;
  added.type = model::ChangeType::added;
  added.snapshot.reset();
  added.object_namespace = "shop";
  for (const auto* r : router.match(added)) CHECK(!r->name.starts_with("inventory/"));
  CHECK(router.match(added).size() == 1);  // "everything"; "shop deployments" wants Deleted
}

TEST_CASE("inventory: inventory_every is a duration, Snapshot is no watch event, and inventory/ names are kept") {
  CHECK(config::parse_duration("6h") == std::chrono::hours(6));
  CHECK(config::parse_duration("1h30m") == std::chrono::minutes(90));
  CHECK(config::parse_duration("90s") == std::chrono::seconds(90));
  CHECK(config::parse_duration("7d") == std::chrono::hours(168));
  for (const char* bad : {"", "6", "h", "6x", "-1h", "1.5h", "6h ", "9999999999s", "1h1"})
    CHECK_MESSAGE(!config::parse_duration(bad), bad);
  auto error = [](const std::string& toml) {
    try {
      config::parse(toml, "kubetrail.toml");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string handler = "[[handlers]]\nname = \"cmdb\"\nplugin = \"log\"\n";
  const std::string route = "[[routes]]\nchain = [\"cmdb\"]\n";
  CHECK(error(handler + "inventory_every = \"6 hours\"\n" + route)
            .find("kubetrail.toml:4: key \"handlers[0].inventory_every\": expected a duration from \"1s\" to "
                  "\"366d\", like \"6h\" or \"1h30m\", got \"6 hours\"") != std::string::npos);
  CHECK(error(handler + "inventory_every = 3600\n" + route).find("got an integer") != std::string::npos);
  CHECK(error(handler + "inventory_every = \"0s\"\n" + route).find("inventory_every") != std::string::npos);
  CHECK(error(handler + "inventory_every = \"400d\"\n" + route).find("inventory_every") != std::string::npos);
  CHECK(error(handler + "[watch]\nevents = [\"Snapshot\"]\n" + route)
            .find("unknown event type \"Snapshot\" (expected Added, Modified or Deleted)") != std::string::npos);
  CHECK(error(handler + "[[routes]]\nname = \"inventory/cmdb\"\nchain = [\"cmdb\"]\n")
            .find("names beginning with \"inventory/\" are kept for handlers' inventories") != std::string::npos);
}

TEST_CASE("inventory: when a handler last took a snapshot survives a restart of the state store") {
  test::TempDir dir;
  const std::string path = (dir.path() / "state.db").string();
  {
    auto store = state::StateStore::open(path, false);
    CHECK(!store->setting("inventory/cmdb"));
    store->set_setting("inventory/cmdb", "1764900000");
    store->set_setting("inventory/cmdb", "1764903600");  // the next one replaces it
    // A setting cannot overwrite what the store keeps under its own names.
    store->set_setting("schema_version", "0");
  }
  auto store = state::StateStore::open(path, false);  // would refuse a schema_version of 0
  CHECK(store->setting("inventory/cmdb").value_or("(none)") == "1764903600");
  CHECK(!store->setting("inventory/other"));
}

// A kill -9 after a snapshot's last batch is routed (its outbox rows
// written) and before its time is recorded: the restart found no time and
// took the whole snapshot again under a new id, so the receiver got every
// object twice (failed before SnapshotLedger: last_taken was 0 here).
TEST_CASE("inventory: a snapshot routed whole just before a kill -9 is not taken again, one cut short is") {
  test::TempDir dir;
  const std::string path = (dir.path() / "state.db").string();
  const std::string last_item = "c/u-9/snapshot/cmdb/2026-12-05T10:00:00Z";
  {
    auto store = state::StateStore::open(path, false);
    watch::SnapshotLedger ledger(*store);
    ledger.taken("cmdb", 1764900000);  // an earlier snapshot
    ledger.last_batch("cmdb", 1764928800, last_item);
    ledger.last_batch("audit", 1764928800, "c/u-9/snapshot/audit/2026-12-05T10:00:00Z");
    // The last batch routed, as delivery writes it (the handler alone in
    // its inventory route's chain); audit's never was. Then the process dies.
    CHECK(store->outbox_add(last_item, "cmdb", "inventory/cmdb", 0, R"({"id":"x"})") > 0);
  }
  {
    auto store = state::StateStore::open(path, false);
    watch::SnapshotLedger ledger(*store);
    CHECK(ledger.last_taken("cmdb") == 1764928800);  // routed whole: not due again
    CHECK(ledger.last_taken("audit") == 0);          // cut short: taken again, whole
    // Another handler's row does not count for this one.
    ledger.last_batch("other", 1764928800, last_item);
    CHECK(ledger.last_taken("other") == 0);
  }
  // What last_taken() found is recorded, and the announcements are gone.
  auto store = state::StateStore::open(path, false);
  watch::SnapshotLedger ledger(*store);
  CHECK(store->setting("inventory/cmdb").value_or("") == "1764928800");
  CHECK(ledger.last_taken("cmdb") == 1764928800);
  CHECK(ledger.last_taken("audit") == 0);
  CHECK(store->setting("inventory-last-batch/cmdb").value_or("") == "");
}

// The same kill -9, then a restart that compacts the outbox before the
// schedule first asks when the snapshot was taken: a long stop ages the
// delivered row past [state] retention (or the outbox is over its cap), so
// the row that proved the last batch routed was gone, and the whole
// snapshot went out again. The daemon settles the announcements before
// each compaction (before settle_announced(), last_taken was 0 here).
TEST_CASE("inventory: a snapshot routed whole before a kill -9 stays taken when the restart compacts the outbox") {
  test::TempDir dir;
  const std::string path = (dir.path() / "state.db").string();
  const std::string last_item = "c/u-9/snapshot/cmdb/2026-12-05T10:00:00Z";
  {
    auto store = state::StateStore::open(path, false);
    watch::SnapshotLedger ledger(*store);
    ledger.taken("audit", 1764900000);  // long settled: no announcement
    ledger.last_batch("cmdb", 1764928800, last_item);
    ledger.last_batch("cmdb%_", 1764928800, "c/u-1/snapshot/other");  // never routed
    const int64_t seq = store->outbox_add(last_item, "cmdb", "inventory/cmdb", 0, R"({"id":"x"})");
    REQUIRE(seq > 0);
    store->outbox_delivered(seq);
  }
  auto store = state::StateStore::open(path, false);
  CHECK(store->setting_names("inventory-last-batch/") ==
        std::vector<std::string>{"inventory-last-batch/cmdb", "inventory-last-batch/cmdb%_"});
  CHECK(store->setting_names("inventory-last-batch/c%").empty());  // a range, not a LIKE pattern
  watch::SnapshotLedger(*store).settle_announced();
  store->outbox_compact(3600, 0);  // over a cap of 0 bytes: every delivered row is forgotten
  REQUIRE(!store->outbox_holds(last_item, "cmdb"));
  watch::SnapshotLedger ledger(*store);
  CHECK(ledger.last_taken("cmdb") == 1764928800);
  CHECK(ledger.last_taken("cmdb%_") == 0);
  CHECK(ledger.last_taken("audit") == 1764900000);
  CHECK(store->setting_names("inventory-last-batch/").empty());
}
