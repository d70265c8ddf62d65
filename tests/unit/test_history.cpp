// Change history (issue 17, item 1): kept once per id, filtered, ordered,
// paginated, bounded by age and size, readable while written.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "helpers.hpp"
#include "model/resource_type.hpp"
#include "state/history.hpp"

using namespace kubetrail;

namespace {

model::ChangeSet change(const std::string& id, const std::string& at, const std::string& ns, const std::string& name,
                        const std::string& manager, const std::string& path = "data.a") {
  model::ChangeSet cs;
  cs.id = id;
  cs.type = model::ChangeType::modified;
  cs.cluster = "c";
  cs.observed_at = at;
  cs.resource = model::resource_type_for(name.starts_with("web") ? "apps/v1" : "v1",
                                         name.starts_with("web") ? "Deployment" : "ConfigMap");
  cs.object_namespace = ns;
  cs.name = name;
  cs.uid = "u-" + name;
  cs.actor = model::Actor{manager, "Update", at};
  model::FieldChange c;
  c.op = model::FieldOp::replace;
  c.path = path;
  c.old_json = "1";
  c.new_json = "2";
  cs.changes.push_back(c);
  return cs;
}

std::vector<std::string> ids(const std::vector<state::History::Row>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(nlohmann::json::parse(r.json)["id"].get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("history: observedAt times parse as RFC 3339, and nothing else does") {
  CHECK(rfc3339_to_ms("1970-01-01T00:00:01Z") == 1000);
  CHECK(rfc3339_to_ms("2026-12-04T18:00:00.250Z") == 1796407200250);
  CHECK(rfc3339_to_ms("2026-12-04T19:00:00+01:00") == 1796407200000);
  CHECK(rfc3339_to_ms("2026-12-04T18:00:00.5Z") == 1796407200500);
  for (const char* bad : {"", "2026-12-04", "2026-12-04T18:00:00", "2026-13-04T18:00:00Z", "2026-12-04T18:00:00Zx",
                          "yesterday", "2026-12-04T18:00:00.Z"}) {
    CAPTURE(bad);
    CHECK(!rfc3339_to_ms(bad));
  }
}

TEST_CASE("history: one row per id, filters, newest first or oldest first, pages") {
  test::TempDir dir;
  state::History h(state::History::path_for(dir / "state.db"));
  h.append({change("c/1", "2026-12-04T10:00:00.000Z", "shop", "web", "argocd", "spec.replicas"),
            change("c/2", "2026-12-04T10:05:00.000Z", "shop", "cfg", "kubectl-patch", "data.timeout"),
            change("c/3", "2026-12-04T10:10:00.000Z", "pay", "web", "kubectl-set",
                   "spec.template.spec.containers[name=app].image")});
  // Routed again after a crash: the same ids are not kept twice.
  h.append({change("c/2", "2026-12-04T10:05:00.000Z", "shop", "cfg", "kubectl-patch", "data.timeout"),
            change("c/4", "2026-12-04T10:15:00.000Z", "shop", "web", "argocd", "spec.replicas")});
  state::History::Filter all;
  all.limit = 0;
  CHECK(ids(h.query(all)) == std::vector<std::string>{"c/4", "c/3", "c/2", "c/1"});
  auto f = all;
  f.oldest_first = true;
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/1", "c/2", "c/3", "c/4"});
  f = all;
  f.namespace_ = "shop";
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/4", "c/2", "c/1"});
  f.name = "web";
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/4", "c/1"});
  f = all;
  for (const char* resource : {"deployments", "deployments.apps", "Deployment"}) {
    f.resource = resource;
    CAPTURE(resource);
    CHECK(ids(h.query(f)) == std::vector<std::string>{"c/4", "c/3", "c/1"});
  }
  f = all;
  f.actor = "kubectl-set";
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/3"});
  f = all;
  f.paths = {"spec.template.spec.containers[*]"};  // ignore_paths patterns
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/3"});
  f.paths = {"spec"};
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/4", "c/3", "c/1"});
  f = all;
  f.since_ms = *rfc3339_to_ms("2026-12-04T10:05:00Z");
  f.until_ms = *rfc3339_to_ms("2026-12-04T10:15:00Z");
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/3", "c/2"});
  f = all;
  f.type = "Deleted";
  CHECK(h.query(f).empty());
  // Pages of two, newest first, by cursor.
  f = all;
  f.limit = 2;
  auto page = h.query(f);
  CHECK(ids(page) == std::vector<std::string>{"c/4", "c/3"});
  f.before_seq = page.back().seq;
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/2", "c/1"});
  // Following: what came after a row.
  f = all;
  f.after_seq = h.last_seq();
  CHECK(h.query(f).empty());
  h.append({change("c/5", "2026-12-04T10:20:00.000Z", "shop", "cfg", "kubectl-patch")});
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/5"});
  f.paths = {"not[valid"};
  CHECK_THROWS_AS(h.query(f), Error);
}

TEST_CASE("history: read while written, as kubetrail history reads a running daemon's") {
  test::TempDir dir;
  auto path = state::History::path_for(dir / "state.db");
  state::History writer(path);
  writer.append({change("c/1", "2026-12-04T10:00:00.000Z", "shop", "cfg", "m")});
  state::History reader(path, true);
  state::History::Filter all;
  CHECK(ids(reader.query(all)) == std::vector<std::string>{"c/1"});
  writer.append({change("c/2", "2026-12-04T10:01:00.000Z", "shop", "cfg", "m")});
  CHECK(ids(reader.query(all)) == std::vector<std::string>{"c/2", "c/1"});
  CHECK_THROWS_WITH_AS(state::History(dir / "missing-history", true), doctest::Contains("missing-history"), Error);
}

TEST_CASE("history: bounded by age, then by size, oldest first") {
  test::TempDir dir;
  auto path = state::History::path_for(dir / "state.db");
  state::History h(path);
  std::vector<model::ChangeSet> batch;
  for (int i = 0; i < 3000; ++i) {
    char at[40];
    std::snprintf(at, sizeof at, "2026-12-04T%02d:%02d:%02d.000Z", 10 + i / 3600, (i / 60) % 60, i % 60);
    batch.push_back(change("c/" + std::to_string(i), at, "shop", "cfg", "m"));
  }
  h.append(batch);
  const int64_t now = *rfc3339_to_ms("2026-12-04T10:50:00Z");
  // Older than 20 minutes before "now": the first 1800 seconds' rows.
  CHECK(h.compact(20 * 60 * 1000, UINT64_MAX, now) == 1800);
  state::History::Filter f;
  f.limit = 0;
  f.oldest_first = true;
  auto rows = h.query(f);
  REQUIRE(rows.size() == 1200);
  CHECK(ids({rows.front()}) == std::vector<std::string>{"c/1800"});
  // Then by size: the oldest go until the kept JSON fits.
  const uint64_t per_row = h.bytes() / 1200;
  h.compact(INT64_MAX / 2, per_row * 500, now);
  CHECK(h.bytes() <= per_row * 500 + per_row);
  rows = h.query(f);
  CHECK(rows.size() <= 500);
  CHECK(rows.size() >= 490);                                        // no more than needed went
  CHECK(ids({rows.back()}) == std::vector<std::string>{"c/2999"});  // the newest stay
  // The byte count survives a reopen.
  const uint64_t bytes = h.bytes();
  state::History again(path);
  CHECK(again.bytes() == bytes);
}
