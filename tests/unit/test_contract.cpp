// The contract with plugins is plugin.h plus the change-set JSON Schema
// (plugin-api/schema/changeset.schema.json, installed with the SDK). These
// tests hold kubetrail to the schema: every change set replay emits through
// the real log plugin validates, so do the shapes replay's recording does
// not reach (catch-up, remove and replace, cluster-scoped, no actor), and
// the schema is strict enough to refuse what kubetrail must never send.
#include <doctest/doctest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "helpers.hpp"
#include "model/change_set.hpp"

using nlohmann::json;
using namespace kubetrail;

namespace {

const valijson::Schema& schema() {
  static const std::unique_ptr<valijson::Schema> s = [] {
    auto out = std::make_unique<valijson::Schema>();
    json doc = json::parse(test::read_file(test::source_dir() / "plugin-api/schema/changeset.schema.json"));
    valijson::SchemaParser parser(valijson::SchemaParser::kDraft7);
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    parser.populateSchema(adapter, *out);
    return out;
  }();
  return *s;
}

// "" when `j` validates, else the validator's first complaints.
std::string violations(const json& j) {
  valijson::Validator v;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter adapter(j);
  if (v.validate(schema(), adapter, &results)) return {};
  std::string out;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    std::string where;
    for (const auto& p : e.context) where += p;
    out += where + ": " + e.description + "\n";
  }
  return out.empty() ? "invalid" : out;
}

// A change set of cluster "prod" with its identity and id filled in.
model::ChangeSet change_set(model::ChangeType type, std::string_view api_version, std::string_view kind, std::string ns,
                            std::string name, std::string uid, std::string rv, std::string observed_at) {
  model::ChangeSet cs;
  cs.type = type;
  cs.cluster = "prod";
  cs.observed_at = std::move(observed_at);
  cs.resource = model::resource_type_for(api_version, kind);
  cs.object_namespace = std::move(ns);
  cs.name = std::move(name);
  cs.uid = std::move(uid);
  cs.resource_version = std::move(rv);
  cs.id = model::change_set_id(cs.cluster, cs.type, cs.uid, cs.object_namespace, cs.name, cs.resource_version);
  return cs;
}

model::ChangeSet modified() {
  auto cs = change_set(model::ChangeType::modified, "apps/v1", "Deployment", "shop", "web", "u-1", "42",
                       "2026-12-01T10:00:00.123Z");
  cs.actor = model::Actor{"kubectl-client-side-apply", "Update", "2026-12-01T09:59:59Z"};
  cs.changes = {{model::FieldOp::replace, "spec.replicas", "2", "3"},
                {model::FieldOp::add, "metadata.labels.tier", "", "\"web\""},
                {model::FieldOp::remove, "spec.template.spec.containers[name=web].env[name=\"a]b\"]", "{\"x\":1}", ""}};
  cs.summary = model::summarize(cs);
  return cs;
}

}  // namespace

TEST_CASE("contract: every change set replay emits through the log plugin validates against the schema") {
  test::TempDir dir;
  auto r = test::kubetrail("replay --config " + (test::source_dir() / "examples/kubetrail.toml").string() + " " +
                               (test::source_dir() / "examples/recordings/rollout/*.json").string(),
                           dir);
  REQUIRE(r.status == 0);
  auto lines = test::lines_of(r.out);
  REQUIRE(lines.size() >= 10);
  std::set<std::string> types;
  for (const auto& line : lines) {
    json j = json::parse(line);
    types.insert(j["type"].get<std::string>());
    INFO(line);
    CHECK(violations(j) == "");
  }
  CHECK(types == std::set<std::string>{"Added", "Modified", "Deleted"});
}

TEST_CASE("contract: catch-up, every field op, cluster-scoped objects and no actor validate") {
  auto cs = modified();
  CHECK(violations(json::parse(cs.to_json())) == "");
  cs.catch_up = true;
  cs.actor.reset();
  cs.old_object = R"({"kind":"Deployment","spec":{"replicas":2}})";  // include_objects
  cs.new_object = R"({"kind":"Deployment","spec":{"replicas":3}})";
  CHECK(violations(json::parse(cs.to_json())) == "");

  auto ns = change_set(model::ChangeType::deleted, "v1", "Namespace", "", "old-team", "u-ns", "77",
                       "2026-12-01T10:00:00Z");  // cluster-scoped
  ns.old_object = R"({"kind":"Namespace","metadata":{"name":"old-team"}})";
  ns.summary = model::summarize(ns);
  json j = json::parse(ns.to_json());
  CHECK_FALSE(j.contains("namespace"));
  CHECK(violations(j) == "");
}

TEST_CASE("contract: the schema refuses what kubetrail must never send") {
  json good = json::parse(modified().to_json());
  REQUIRE(violations(good) == "");
  auto broken = [&](auto&& edit) {
    json j = good;
    edit(j);
    return violations(j);
  };
  CHECK(broken([](json& j) { j.erase("id"); }) != "");
  CHECK(broken([](json& j) { j["type"] = "Updated"; }) != "");
  CHECK(broken([](json& j) { j["schemaVersion"] = "kubetrail.dev/v2"; }) != "");
  CHECK(broken([](json& j) { j["changes"] = json::array(); }) != "");  // a Modified of nothing
  CHECK(broken([](json& j) { j["changes"][1]["old"] = 1; }) != "");    // an add with an old value
  CHECK(broken([](json& j) { j["changes"][0].erase("new"); }) != "");  // a replace without new
  CHECK(broken([](json& j) { j["catchUp"] = false; }) != "");          // present only when true
  CHECK(broken([](json& j) { j["observedAt"] = "yesterday"; }) != "");
  CHECK(broken([](json& j) { j["undocumented"] = 1; }) != "");
  CHECK(broken([](json& j) {
          j["type"] = "Added";
          j["changes"] = json::array();
        }) != "");  // an Added without its object
}

TEST_CASE("contract: a Snapshot validates, and the schema refuses one without its object or its snapshot") {
  auto cs = change_set(model::ChangeType::snapshot, "apps/v1", "Deployment", "shop", "web", "u-1", "42",
                       "2026-12-05T03:00:00.000Z");
  cs.new_object = R"({"kind":"Deployment","spec":{"replicas":3}})";
  cs.snapshot = model::SnapshotInfo{"cmdb/2026-12-05T03:00:00.000Z", "cmdb", 1, 1};
  cs.id = model::snapshot_item_id(cs.cluster, cs.uid, cs.object_namespace, cs.name, cs.snapshot->id);
  cs.summary = model::summarize(cs);
  json good = json::parse(cs.to_json());
  CHECK(violations(good) == "");
  cs.snapshot->handler.clear();  // printed by kubetrail snapshot
  CHECK(violations(json::parse(cs.to_json())) == "");
  auto broken = [&](auto&& edit) {
    json j = good;
    edit(j);
    return violations(j);
  };
  CHECK(broken([](json& j) { j.erase("new"); }) != "");
  CHECK(broken([](json& j) { j.erase("snapshot"); }) != "");
  CHECK(broken([](json& j) { j["snapshot"]["index"] = 0; }) != "");
  CHECK(broken([](json& j) { j["old"] = json::object(); }) != "");
  CHECK(broken([](json& j) { j["type"] = "Added"; }) != "");  // a change carries no snapshot
}

// to_json() writes the document directly and splices the values in (the
// nlohmann round trip of every old/new value was most of a change set's
// cost); to_json_checked() is the nlohmann path it replaced. On what the
// pruner writes they must agree byte for byte, escapes and all. The one
// difference: a value's text is copied as the change set holds it, where
// nlohmann re-formatted numbers (-3e2 as -300.0); the pruner's own writer
// decides how numbers look (it writes 3e2 as 300.0 itself).
TEST_CASE("contract: the direct JSON writer and the nlohmann path write the same bytes") {
  auto cs = modified();
  cs.object_namespace = "shop \"quoted\" \\ \n\t\x01";
  cs.summary = "é — ünïcode, \"quotes\"";
  cs.catch_up = true;
  cs.old_object = R"({"kind":"Deployment","spec":{"replicas":2,"x":[1,2.5,-30,true,null,"s\"q"]}})";
  cs.new_object = R"({"kind":"Deployment","spec":{"replicas":3}})";
  CHECK(cs.to_json() == cs.to_json_checked());
  CHECK(violations(json::parse(cs.to_json())) == "");
  cs.actor.reset();
  cs.old_object.clear();
  cs.changes = {{model::FieldOp::replace, "spec.x", "-3e2", "1.50"}};
  CHECK(cs.to_json().find(R"("old":-3e2,"new":1.50})") != std::string::npos);
  CHECK(json::parse(cs.to_json()) == json::parse(cs.to_json_checked()));
}

TEST_CASE("contract: a string that is not UTF-8 still gives valid JSON, the bad bytes replaced") {
  auto cs = modified();
  cs.summary = "cut \xe2\x82";  // a truncated character
  std::string text = cs.to_json();
  auto j = json::parse(text, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j["summary"] == "cut \xef\xbf\xbd");  // U+FFFD
  CHECK(violations(j) == "");
}
