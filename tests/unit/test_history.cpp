// Change history (issue 17, item 1): kept once per id, filtered, ordered,
// paginated, bounded by age and size, readable while written.
#include <doctest/doctest.h>

#include <sqlite3.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "helpers.hpp"
#include "model/resource_type.hpp"
#include "state/history.hpp"
#include "state/history_writer.hpp"
#include "state/state_store.hpp"

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
  auto next = state::History::filter_from(
      [&](const std::string& k) -> std::optional<std::string> {
        if (k == "cursor") return state::History::cursor_after(page.back());
        if (k == "limit") return "2";
        return std::nullopt;
      },
      0);
  CHECK(ids(h.query(next)) == std::vector<std::string>{"c/2", "c/1"});
  // Following: what came after a row.
  f = all;
  f.after_seq = h.last_seq();
  CHECK(h.query(f).empty());
  h.append({change("c/5", "2026-12-04T10:20:00.000Z", "shop", "cfg", "kubectl-patch")});
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/5"});
  f.paths = {"not[valid"};
  CHECK_THROWS_AS(h.query(f), Error);
}

// The pages are in time order, the rows in written order, and the two
// differ: a change set caught up at start-up, or handed over by a follower,
// is written after ones observed later. A cursor of the seq alone (the
// first version) repeated or skipped such rows across pages; the cursor is
// the (time, seq) of the last row shown.
TEST_CASE("history: pages by (time, seq) cursor see every row once when rows arrive out of time order") {
  test::TempDir dir;
  state::History h(state::History::path_for(dir / "state.db"));
  for (int i : {5, 1, 9, 3, 7, 2, 8, 4, 6, 0})  // written in this order, observed at minute i
    h.append(
        {change("c/" + std::to_string(i), "2026-12-04T10:0" + std::to_string(i) + ":00.000Z", "shop", "cfg", "m")});
  h.append({change("c/10", "2026-12-04T10:05:00.000Z", "shop", "cfg", "m")});  // the same time as c/5
  std::vector<std::string> seen;
  std::optional<std::string> cursor;
  for (int pages = 0; pages < 20; ++pages) {
    auto f = state::History::filter_from(
        [&](const std::string& k) -> std::optional<std::string> {
          if (k == "cursor") return cursor;
          if (k == "limit") return "3";
          return std::nullopt;
        },
        0);
    auto rows = h.query(f);
    for (auto& id : ids(rows)) seen.push_back(id);
    if (rows.size() < 3) break;
    cursor = state::History::cursor_after(rows.back());
  }
  CHECK(seen == std::vector<std::string>{"c/9", "c/8", "c/7", "c/6", "c/10", "c/5", "c/4", "c/3", "c/2", "c/1", "c/0"});
}

TEST_CASE("history: API parameters, the id's seq, and counts per time bucket") {
  test::TempDir dir;
  state::History h(state::History::path_for(dir / "state.db"));
  h.append({change("c/1", "2026-12-04T10:00:00.000Z", "shop", "web", "argocd", "spec.replicas"),
            change("c/2", "2026-12-04T10:01:00.000Z", "shop", "cfg", "kubectl-patch", "data.timeout"),
            change("c/3", "2026-12-04T10:09:59.000Z", "pay", "web", "kubectl-set", "spec.replicas")});
  const int64_t now = *rfc3339_to_ms("2026-12-04T10:10:00Z");
  std::map<std::string, std::string> params = {{"since", "10m"}, {"namespace", "shop"}, {"path", "data"}};
  auto get = [&](const std::string& k) -> std::optional<std::string> {
    auto it = params.find(k);
    return it == params.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  auto f = state::History::filter_from(get, now);
  CHECK(f.since_ms == now - 600000);
  // A time of day: the last time it was, local time.
  params["since"] = "14:00";
  const int64_t at_14 = state::History::filter_from(get, now).since_ms;
  CHECK(at_14 <= now);
  CHECK(at_14 > now - 86400000);
  std::time_t t = static_cast<std::time_t>(at_14 / 1000);
  std::tm local{};
  localtime_r(&t, &local);
  CHECK(local.tm_hour == 14);
  CHECK(local.tm_min == 0);
  params["since"] = "10m";
  CHECK(ids(h.query(f)) == std::vector<std::string>{"c/2"});
  params = {{"since", "2026-12-04T10:00:30Z"}, {"until", "2026-12-04T10:05:00Z"}};
  CHECK(ids(h.query(state::History::filter_from(get, now))) == std::vector<std::string>{"c/2"});
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{{"since", "yesterday"},
                                                                            {"since", "25:00"},
                                                                            {"since", "14:0x"},
                                                                            {"limit", "-1"},
                                                                            {"limit", "ten"},
                                                                            {"cursor", "12"},
                                                                            {"path", "a[b"}}) {
    params = {{key, value}};
    CAPTURE(key);
    CHECK_THROWS_WITH_AS(state::History::filter_from(get, now), doctest::Contains(key.c_str()), Error);
  }
  CHECK(h.seq_of("c/2") > h.seq_of("c/1"));
  CHECK(h.seq_of("c/99") == 0);
  // Ten one-minute buckets from 10:00; the path filter counts row by row.
  params = {{"since", "2026-12-04T10:00:00Z"}, {"until", "2026-12-04T10:10:00Z"}};
  auto counts = h.histogram(state::History::filter_from(get, now), 10);
  CHECK(counts == std::vector<uint64_t>{1, 1, 0, 0, 0, 0, 0, 0, 0, 1});
  params["path"] = "spec";
  counts = h.histogram(state::History::filter_from(get, now), 10);
  CHECK(counts == std::vector<uint64_t>{1, 0, 0, 0, 0, 0, 0, 0, 0, 1});
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
  // No more than needed went: steps are sized by the mean row, and
  // compressed rows differ by a few bytes, so a step may take ~2% extra.
  CHECK(rows.size() >= 480);
  CHECK(ids({rows.back()}) == std::vector<std::string>{"c/2999"});  // the newest stay
  // The byte count survives a reopen.
  const uint64_t bytes = h.bytes();
  state::History again(path);
  CHECK(again.bytes() == bytes);
}

// The history off the routing thread (state/history_writer.hpp): a batch's
// journal entries are retired only once its rows are kept - never before,
// so a crash in between routes them again - and what is queued is kept
// before the writer stops.
TEST_CASE("history writer: keeps batches in order, then retires their journal entries, and drains on stop") {
  test::TempDir dir;
  auto store = state::StateStore::open((dir / "state.db").string(), false);
  store->save("cm", {}, {}, "", {{0, "c/1", R"({"n":1})"}, {0, "c/2", R"({"n":2})"}, {0, "c/3", R"({"n":3})"}});
  REQUIRE(store->journal_size() == 3);
  const auto path = state::History::path_for(dir / "state.db");
  {
    state::History history(path);
    state::HistoryWriter writer(history, store.get());
    writer.push({change("c/1", "2026-12-04T10:00:00.000Z", "shop", "cfg", "m"),
                 change("c/2", "2026-12-04T10:01:00.000Z", "shop", "cfg", "m")},
                {"c/1", "c/2"});
    writer.drain();
    CHECK(store->journal_size() == 1);  // c/3 not yet kept: still in the journal
    state::History::Filter all;
    all.oldest_first = true;
    CHECK(ids(history.query(all)) == std::vector<std::string>{"c/1", "c/2"});
    // Routed again after a crash: kept once.
    writer.push({change("c/2", "2026-12-04T10:01:00.000Z", "shop", "cfg", "m"),
                 change("c/3", "2026-12-04T10:02:00.000Z", "shop", "cfg", "m")},
                {"c/2", "c/3"});
  }  // stopped: what was queued is kept first
  CHECK(store->journal_size() == 0);
  state::History reader(path, true);
  state::History::Filter all;
  all.oldest_first = true;
  CHECK(ids(reader.query(all)) == std::vector<std::string>{"c/1", "c/2", "c/3"});
}

// The writer keeps everything queued in one transaction, up to
// kMaxPerTransaction change sets (a commit and its WAL frames cost about
// what a dozen rows do). Shown with the file's write lock held by another
// connection while ten batches of 1,000 are queued: the first transaction
// waits for the lock, and what queued behind it goes in few, capped ones.
// One transaction per batch (the writer before) is 10 commits; no cap is
// a transaction of 9,000 or more.
TEST_CASE("history writer: what queues while a commit waits is kept in few transactions, each capped") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  state::History history(path);
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(path.string().c_str(), &other) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  constexpr size_t kBatches = 10, kBatch = 1000;
  {
    state::HistoryWriter writer(history, nullptr);
    for (size_t b = 0; b < kBatches; ++b) {
      std::vector<model::ChangeSet> batch;
      for (size_t i = 0; i < kBatch; ++i)
        batch.push_back(change("c/" + std::to_string(b * kBatch + i), "2026-12-04T10:00:00.000Z", "shop",
                               "cfg-" + std::to_string(i), "m"));
      writer.push(std::move(batch), {});
    }
    REQUIRE(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);  // well within the 5 s wait
    writer.drain();
  }
  sqlite3_close(other);
  const auto commits = history.commits();
  CHECK(commits.count >= 2);
  CHECK(commits.count <= 4);
  CHECK(commits.largest >= 2 * kBatch);
  CHECK(commits.largest < state::HistoryWriter::kMaxPerTransaction + kBatch);
  state::History::Filter all;
  all.limit = kBatches * kBatch + 1;
  CHECK(history.query(all).size() == kBatches * kBatch);
}

// Issue 15: the history made each change set's JSON again; it now writes
// the rendering delivery made (ChangeSet::rendered). Shown with a rendering
// that differs from to_json(), which delivery never hands on: the row holds
// the rendering. Failed before: the row held to_json()'s text.
TEST_CASE("history: a change set's rendering is what is kept, not a second one") {
  test::TempDir dir;
  state::History h(state::History::path_for(dir / "state.db"));
  model::ChangeSet cs = change("c/1", "2026-12-04T10:00:00.000Z", "shop", "web", "argocd", "spec.replicas");
  nlohmann::json marked = nlohmann::json::parse(cs.to_json());
  marked["summary"] = "rendered once";
  auto rendering = std::make_shared<std::string>(marked.dump());
  rendering->append(model::ChangeSet::kJsonPadding, '\0');
  cs.rendered = rendering;
  h.append({cs});
  state::History::Filter all;
  all.limit = 0;
  auto rows = h.query(all);
  REQUIRE(rows.size() == 1);
  CHECK(nlohmann::json::parse(rows[0].json)["summary"] == "rendered once");
  // Without one, the history makes it.
  cs.rendered.reset();
  cs.id = "c/2";
  h.append({cs});
  rows = h.query(all);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].json == cs.to_json());
}

namespace {

// A Pod's change set as run hands it on with include_objects: both objects
// (the fixture, renamed, one label apart) and the label's change.
model::ChangeSet pod_change(int i) {
  static const nlohmann::json pod =
      nlohmann::json::parse(test::read_file(test::source_dir() / "tests/fixtures/pod.json"));
  nlohmann::json old_pod = pod, new_pod = pod;
  const std::string name = "checkout-" + std::to_string(i);
  old_pod["metadata"]["name"] = new_pod["metadata"]["name"] = name;
  old_pod["metadata"]["uid"] = new_pod["metadata"]["uid"] = "uid-" + std::to_string(i);
  new_pod["metadata"]["labels"]["tier"] = "t" + std::to_string(i);
  char at[40];
  std::snprintf(at, sizeof at, "2026-12-04T10:%02d:%02d.000Z", (i / 60) % 60, i % 60);
  model::ChangeSet cs = change("c/p" + std::to_string(i), at, "shop", name, "kubectl-label", "metadata.labels.tier");
  cs.resource = model::resource_type_for("v1", "Pod");
  cs.changes[0].op = model::FieldOp::add;
  cs.changes[0].old_json.clear();
  cs.changes[0].new_json = "\"t" + std::to_string(i) + "\"";
  cs.old_object = old_pod.dump();
  cs.new_object = new_pod.dump();
  return cs;
}

// pod_change(i) for i in [from, to).
std::vector<model::ChangeSet> pod_changes(int from, int to) {
  std::vector<model::ChangeSet> out;
  for (int i = from; i < to; ++i) out.push_back(pod_change(i));
  return out;
}

// What a query reads, by change-set id.
std::map<std::string, std::string> json_by_id(state::History& h) {
  state::History::Filter all;
  all.limit = 0;
  std::map<std::string, std::string> out;
  for (auto& r : h.query(all)) out[r.id] = r.json;
  return out;
}

int64_t scalar(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &q, nullptr) == SQLITE_OK);
  int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
  sqlite3_finalize(q);
  sqlite3_close(db);
  return v;
}

void exec_sql(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  CAPTURE((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

// Issue 15: with a state store on, the history was the largest cost a
// change set adds - SQLite inserting each one's JSON (~17 KB for a Pod with
// both objects: five overflow pages), then writing the same pages to the
// WAL and again at its checkpoints (state_bench: 18.5 us a change set, more
// than the whole watch event without a state store). Rows are now zstd
// frames against a dictionary of their resource's first change sets.
// Failed before: the kept bytes were the JSON's own.
TEST_CASE("history: rows are kept compressed against their resource's first change sets, and read back as written") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  std::map<std::string, std::string> written;
  uint64_t json_bytes = 0;
  auto keep = [&](state::History& h, int from, int to) {
    std::vector<model::ChangeSet> batch;
    for (int i = from; i < to; ++i) {
      batch.push_back(pod_change(i));
      if (i % 3 == 0)  // another resource in the same batches: a dictionary of its own
        batch.push_back(change("c/m" + std::to_string(i), batch.back().observed_at, "shop", "cfg", "m"));
      if (batch.size() >= 10 || i + 1 == to) {
        for (const auto& cs : batch) {
          written[cs.id] = cs.to_json();
          json_bytes += written[cs.id].size();
        }
        h.append(batch);
        batch.clear();
      }
    }
  };
  std::optional<state::History> reader;  // opened before any dictionary exists, as `kubetrail history` may be
  {
    state::History h(path);
    reader.emplace(path, true);
    keep(h, 0, 200);
    CHECK(json_by_id(h) == written);
    CHECK(h.bytes() * 5 < json_bytes);  // 17 KB a row written as it is; about 1 KB against a dictionary
  }
  CHECK(json_by_id(*reader) == written);  // the dictionaries written since it opened are read when a row needs them
  // Reopened: the dictionaries are the file's, not made again.
  const uint64_t before = json_bytes;
  state::History h(path);
  const uint64_t bytes_before = h.bytes();
  keep(h, 200, 300);
  CHECK((h.bytes() - bytes_before) * 5 < json_bytes - before);
  CHECK(scalar(path, "SELECT COUNT(*) FROM history_dictionaries") == 2);  // Pods, ConfigMaps
  // Each row against its own resource's dictionary, though the batches mix
  // them (the writer looks a resource's packing up when the resource
  // changes from one row to the next, not per row).
  CHECK(scalar(path, "SELECT COUNT(*) FROM history WHERE codec != 0") > 200);
  CHECK(scalar(path,
               "SELECT COUNT(*) FROM history h JOIN history_dictionaries d ON h.codec = d.id"
               " WHERE d.resource != h.resource") == 0);
  CHECK(json_by_id(h) == written);
  CHECK(json_by_id(*reader) == written);
}

// The history file is one a user points at (`kubetrail history --state`):
// a row whose frame does not decode, or names a dictionary the file lacks,
// is an error about that row - the query reads the others.
TEST_CASE("history: a row that does not decode is left out with a warning naming it, and the others are read") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  std::map<std::string, std::string> written;
  {
    state::History h(path);
    std::vector<model::ChangeSet> batch;
    for (int i = 0; i < 60; ++i) batch.push_back(pod_change(i));
    h.append(batch);
    for (const auto& cs : batch) written[cs.id] = cs.to_json();
  }
  const int64_t packed = scalar(path, "SELECT COUNT(*) FROM history WHERE codec != 0");
  REQUIRE(packed > 40);
  exec_sql(path,
           "UPDATE history SET json = x'28b52ffd2000ffff' WHERE id = 'c/p50';"  // a frame cut short
           "UPDATE history SET json = x'00' WHERE id = 'c/p51';"                // not a frame at all
           "UPDATE history SET codec = 999 WHERE id = 'c/p52';");               // a dictionary not there
  written.erase("c/p50");
  written.erase("c/p51");
  written.erase("c/p52");
  for (bool read_only : {true, false}) {
    CAPTURE(read_only);
    test::LogCapture log;
    state::History h(path, read_only);
    CHECK(json_by_id(h) == written);
    const std::string said = log.text();
    CAPTURE(said);
    for (const char* each : {"c/p50", "c/p51", "c/p52", "dictionary 999"}) CHECK(said.find(each) != std::string::npos);
    CHECK(said.find(path.string()) != std::string::npos);
  }
}

// A dictionary the file holds that kubetrail never writes (not change-set
// JSON) is not loaded, and the rows compressed against it are left out. It
// is looked for once, not again for every row that names it: a hostile
// file of 100,000 such rows re-read the dictionary table 100,000 times.
// Failed before: the warning about the dictionary came once per row.
TEST_CASE("history: a dictionary kubetrail does not write is refused once, and its rows are left out") {
  // Neither JSON nor zstd's format; zstd's format with tables that do not
  // read (zstd refuses it; since format 2 the history writes that format).
  const char* hostile = nullptr;
  SUBCASE("not a dictionary of either kind") { hostile = "x'00a430ec01020304'"; }
  SUBCASE("zstd's own magic, then no tables") { hostile = "x'37a430ec01020304'"; }
  REQUIRE(hostile);
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  {
    state::History h(path);
    std::vector<model::ChangeSet> batch;
    for (int i = 0; i < 60; ++i) batch.push_back(pod_change(i));
    h.append(batch);
  }
  const int64_t packed = scalar(path, "SELECT COUNT(*) FROM history WHERE codec != 0");
  REQUIRE(packed > 20);
  exec_sql(path, std::string("UPDATE history_dictionaries SET content = ") + hostile);
  for (bool read_only : {true, false}) {
    CAPTURE(read_only);
    test::LogCapture log;
    state::History h(path, read_only);
    CHECK(json_by_id(h).size() == static_cast<size_t>(60 - packed));  // the rows kept as text
    const std::string said = log.text();
    size_t refused = 0;
    for (size_t at = said.find("is not one kubetrail writes"); at != std::string::npos;
         at = said.find("is not one kubetrail writes", at + 1))
      ++refused;
    CHECK(refused == 1);
    if (!read_only) {  // the writer keeps going: that resource's rows as text from then on
      std::vector<model::ChangeSet> more;
      for (int i = 100; i < 110; ++i) more.push_back(pod_change(i));
      REQUIRE_NOTHROW(h.append(more));
      CHECK(json_by_id(h).size() == static_cast<size_t>(60 - packed + 10));
    }
  }
}

// A history written before rows were compressed (no codec column) reads as
// it is, read-only; the daemon's first open adds the column and compresses
// what it writes from then on. One written by a newer kubetrail is refused
// by name rather than misread.
TEST_CASE("history: a file of the format before compression is read, and upgraded by its writer") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  const model::ChangeSet old_row = pod_change(1000);
  exec_sql(
      path,
      "CREATE TABLE history(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,"
      " time_ms INTEGER NOT NULL, cluster TEXT NOT NULL, resource TEXT NOT NULL, kind TEXT NOT NULL,"
      " namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, type TEXT NOT NULL,"
      " actor TEXT NOT NULL, paths TEXT NOT NULL, json TEXT NOT NULL);"
      "CREATE INDEX history_time ON history(time_ms);"
      "INSERT INTO history(id, time_ms, cluster, resource, kind, namespace, name, uid, type, actor, paths, json)"
      " VALUES('" +
          old_row.id +
          "', 1796378400000, 'c', 'pods', 'Pod', 'shop', 'checkout-1000', 'uid-1000', 'Modified', "
          "'kubectl-label', 'metadata.labels.tier', '" +
          old_row.to_json() +
          "');"
          // The same (time, id) twice, as no kubetrail writes it: kept once by the upgrade, which
          // makes (time, id) unique.
          "INSERT INTO history(id, time_ms, cluster, resource, kind, namespace, name, uid, type, actor, paths, json)"
          " SELECT id, time_ms, cluster, resource, kind, namespace, name, uid, type, actor, paths, json"
          " FROM history;");
  std::map<std::string, std::string> written{{old_row.id, old_row.to_json()}};
  {
    state::History reader(path, true);
    CHECK(json_by_id(reader) == written);
  }
  {
    state::History h(path);
    std::vector<model::ChangeSet> batch;
    for (int i = 0; i < 60; ++i) batch.push_back(pod_change(i));
    h.append(batch);
    for (const auto& cs : batch) written[cs.id] = cs.to_json();
    CHECK(json_by_id(h) == written);
  }
  CHECK(scalar(path, "SELECT COUNT(*) FROM history WHERE codec != 0") > 40);
  CHECK(scalar(path, ("SELECT COUNT(*) FROM history WHERE id = '" + old_row.id + "'").c_str()) == 1);
  // The time index replaced by the (time, id) one that append() looks ids up in.
  CHECK(scalar(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'history_time_id'") == 1);
  CHECK(scalar(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'history_time'") == 0);
  exec_sql(path, "PRAGMA user_version = 99");
  for (bool read_only : {true, false}) {
    CAPTURE(read_only);
    CHECK_THROWS_WITH_AS(state::History(path, read_only), doctest::Contains("format 99"), Error);
  }
}

// A resource whose first change set alone is larger than a dictionary
// holds (DictionaryCodec::kMaxDictionaryBytes) gets an empty one: its rows
// are zstd frames without a dictionary, and read back as written.
TEST_CASE("history: change sets larger than a dictionary are kept and read back") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  std::map<std::string, std::string> written;
  {
    state::History h(path);
    for (int i = 0; i < 4; ++i) {
      model::ChangeSet cs =
          change("c/big" + std::to_string(i), "2026-12-04T10:00:0" + std::to_string(i) + ".000Z", "shop", "cfg", "m");
      cs.new_object = R"({"data":{"blob":")" + std::string(100000, static_cast<char>('a' + i)) + R"("}})";
      written[cs.id] = cs.to_json();
      h.append({cs});
    }
    CHECK(json_by_id(h) == written);
    CHECK(h.bytes() < written.begin()->second.size() + 3000);  // the first as text, the rest compressed
  }
  state::History reader(path, true);
  CHECK(json_by_id(reader) == written);
  CHECK(scalar(path, "SELECT COUNT(*) FROM history_dictionaries") == 1);
}

// Issue 15: a row's insert paid AUTOINCREMENT's sqlite_sequence row (read
// and written per row) and a statement of its own; seqs are now the
// writer's, rows go sixteen to a statement. Failed before: the table was
// made with AUTOINCREMENT (the first check). What AUTOINCREMENT promised
// must still hold: a seq is never given twice, even once compaction has
// removed every row and the file is opened again - `history --follow`
// and the change stream follow by seq.
TEST_CASE("history: seqs are the writer's, in written order, and never given twice") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  {
    state::History h(path);
    const auto batch = pod_changes(0, 40);  // two full statements and eight rows alone
    h.append(batch);
    CHECK(scalar(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'history' AND sql LIKE '%AUTOINCREMENT%'") ==
          0);
    state::History::Filter f;
    f.limit = 0;
    f.in_written_order = true;
    auto rows = h.query(f);
    REQUIRE(rows.size() == 40);
    for (size_t i = 0; i < rows.size(); ++i) {
      CAPTURE(i);
      CHECK(rows[i].seq == static_cast<int64_t>(i) + 1);
      CHECK(rows[i].id == batch[i].id);
    }
    CHECK(h.last_seq() == 40);
    CHECK(h.compact(0, UINT64_MAX, *rfc3339_to_ms("2026-12-05T00:00:00Z")) == 40);
    CHECK(h.last_seq() == 0);
    h.append({pod_change(100)});
    CHECK(h.last_seq() == 41);
    CHECK(h.compact(0, UINT64_MAX, *rfc3339_to_ms("2026-12-05T00:00:00Z")) == 1);
  }
  state::History again(path);  // empty: only the mark each commit keeps says 41 was given
  again.append({pod_change(101)});
  CHECK(again.last_seq() == 42);
}

// A file made before, whose table has AUTOINCREMENT: its rows all gone,
// only sqlite_sequence remembers the seqs given; the writer goes on past it.
TEST_CASE("history: a table made with AUTOINCREMENT goes on past its sqlite_sequence") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  exec_sql(path,
           "CREATE TABLE history(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,"
           " time_ms INTEGER NOT NULL, cluster TEXT NOT NULL, resource TEXT NOT NULL, kind TEXT NOT NULL,"
           " namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, type TEXT NOT NULL,"
           " actor TEXT NOT NULL, paths TEXT NOT NULL, json TEXT NOT NULL, codec INTEGER NOT NULL DEFAULT 0);"
           "INSERT INTO history(id, time_ms, cluster, resource, kind, namespace, name, uid, type, actor, paths, json)"
           " VALUES('x', 1, 'c', 'pods', 'Pod', 'shop', 'p', 'u', 'Modified', 'm', 'a', '{}'),"
           " ('y', 2, 'c', 'pods', 'Pod', 'shop', 'p', 'u', 'Modified', 'm', 'a', '{}');"
           "DELETE FROM history; PRAGMA user_version = 1;");
  state::History h(path);
  h.append(pod_changes(0, 20));
  CHECK(h.last_seq() == 22);
  CHECK(scalar(path, "SELECT MIN(seq) FROM history") == 3);
}

// Rows already kept (a batch routed again after a crash) and a change set
// twice in one batch, inside one statement and across statements: each is
// one row, and bytes() - the size cap's running total - counts only the
// rows inserted, as a reopen recounts them.
TEST_CASE("history: repeats within and across a batch's statements are kept once, and counted once") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  state::History h(path);
  h.append(pod_changes(0, 50));                        // past the dictionary's samples: compressed rows
  auto second = pod_changes(40, 75);                   // ten kept already, in the first statement
  second.insert(second.begin() + 20, pod_change(60));  // in another statement than its first
  second.insert(second.begin() + 12, pod_change(55));  // in the same statement as its first
  second.push_back(pod_change(74));                    // among the rows alone
  h.append(second);
  state::History::Filter all;
  all.limit = 0;
  CHECK(h.query(all).size() == 75);
  CHECK(scalar(path, "SELECT COUNT(DISTINCT id) FROM history") == 75);
  const auto kept = static_cast<uint64_t>(scalar(path, "SELECT SUM(length(json)) FROM history"));
  CHECK(h.bytes() == kept);
  CHECK(state::History(path).bytes() == kept);
}

// Untrusted bytes: the high-water mark is read from the file. One at the
// end of int64 made the next seq overflow (undefined behaviour, then rows
// at negative seqs); it is refused by name.
TEST_CASE("history: a last seq that leaves no room is refused, naming the file") {
  test::TempDir dir;
  const auto path = state::History::path_for(dir / "state.db");
  { state::History(path).append(pod_changes(0, 3)); }
  exec_sql(path, "UPDATE history_meta SET value = 9223372036854775807 WHERE name = 'last_seq'");
  const std::string said = "history " + path.string() + ": its last seq 9223372036854775807 leaves no room";
  CHECK_THROWS_WITH_AS(state::History{path}, doctest::Contains(said.c_str()), Error);
  CHECK_NOTHROW(state::History(path, true));  // a reader gives no seqs
}
