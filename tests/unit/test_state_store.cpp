// The state store's checkpoint rows: what save() writes, load() reads back,
// and stores written by an older layout keep their checkpoint.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "common/error.hpp"
#include "helpers.hpp"
#include "state/state_store.hpp"

using namespace kubetrail;

namespace {

model::StoredObject object(const std::string& uid, const std::string& rv, const std::string& json) {
  model::StoredObject o;
  o.uid = uid;
  o.resource_version = rv;
  o.json = json;
  return o;
}

}  // namespace

TEST_CASE("state store: an upsert of a known key replaces its row, a delete removes it, per resource") {
  test::TempDir dir;
  auto store = state::StateStore::open((dir / "s.db").string(), false);
  auto a1 = object("u-a", "1", R"({"data":{"k":"1"}})");
  auto b1 = object("u-b", "1", R"({"data":{"k":"b"}})");
  store->save("configmaps", {{"ns/a", &a1}, {"ns/b", &b1}}, {}, "10");
  store->save("secrets", {{"ns/a", &b1}}, {}, "7");
  auto a2 = object("u-a2", "2", R"({"data":{"k":"2"}})");
  store->save("configmaps", {{"ns/a", &a2}}, {"ns/b"}, "");  // "" keeps resourceVersion 10

  auto cp = store->load("configmaps");
  REQUIRE(cp);
  CHECK(cp->resource_version == "10");
  REQUIRE(cp->objects.size() == 1);
  CHECK(cp->objects.at("ns/a").uid == "u-a2");
  CHECK(cp->objects.at("ns/a").resource_version == "2");
  CHECK(cp->objects.at("ns/a").json == R"({"data":{"k":"2"}})");
  auto other = store->load("secrets");  // same key, other resource: untouched
  REQUIRE(other);
  CHECK(other->objects.at("ns/a").uid == "u-b");
  CHECK_FALSE(store->load("pods"));
}

// The objects table was a WITHOUT ROWID table (same columns, schema 1); a
// store written then must open with its checkpoint intact.
TEST_CASE("state store: a store with the old WITHOUT ROWID objects table opens with its checkpoint") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const char* old =
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '1');"
        "CREATE TABLE resources(resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL);"
        "INSERT INTO resources VALUES('configmaps', '42');"
        "CREATE TABLE objects(resource TEXT NOT NULL, key TEXT NOT NULL, uid TEXT NOT NULL,"
        " resource_version TEXT NOT NULL, object TEXT NOT NULL, PRIMARY KEY(resource, key)) WITHOUT ROWID;"
        "INSERT INTO objects VALUES('configmaps', 'ns/a', 'u-a', '41', '{\"data\":{}}');";
    REQUIRE(sqlite3_exec(db, old, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto store = state::StateStore::open(path, false);
    auto cp = store->load("configmaps");
    REQUIRE(cp);
    CHECK(cp->resource_version == "42");
    REQUIRE(cp->objects.count("ns/a") == 1);
    CHECK(cp->objects.at("ns/a").uid == "u-a");
    auto b = object("u-b", "43", "{}");
    store->save("configmaps", {{"ns/a", &b}}, {}, "43");  // the upsert works on the converted table
  }
  auto store = state::StateStore::open(path, false);  // and opening again converts nothing twice
  auto cp = store->load("configmaps");
  REQUIRE(cp);
  CHECK(cp->objects.size() == 1);
  CHECK(cp->objects.at("ns/a").uid == "u-b");
  store.reset();  // the store holds its file exclusively while open
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE name = 'objects'", -1, &q, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  CHECK(sql.find("WITHOUT ROWID") == std::string::npos);
  sqlite3_finalize(q);
  sqlite3_close(db);
}

namespace {

std::vector<std::pair<std::string, const model::StoredObject*>> rows(
    std::initializer_list<std::pair<std::string, const model::StoredObject*>> r) {
  return r;
}

// Runs one statement against the store's file from outside the store.
void sql(const std::string& path, const char* statement) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, statement, nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

int64_t count(const std::string& path, const char* query) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, query, -1, &q, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return n;
}

}  // namespace

// Watch events are appended to the log; a list page goes to `objects`
// after folding the log; load() sees both in order; reopening folds.
TEST_CASE("state store: the log and the objects table read back as one checkpoint, in the order written") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  std::vector<model::StoredObject> page;
  for (int i = 0; i < 300; ++i)
    page.push_back(
        object("u-" + std::to_string(i), "1",
               R"({"metadata":{"name":"p)" + std::to_string(i) +
                   R"("},"spec":{"containers":[{"name":"web",)"
                   R"("image":"registry.example.com/shop/web:1.27.3","ports":[{"containerPort":8080}]}]}})"));
  // The store holds its file exclusively while open: the file is looked
  // at from outside between closing and opening it again.
  std::vector<std::pair<std::string, const model::StoredObject*>> list;
  for (int i = 0; i < 300; ++i) list.emplace_back("ns/p" + std::to_string(i), &page[static_cast<size_t>(i)]);
  auto store = state::StateStore::open(path, false);
  store->save("pods", list, {}, "10");  // a list page: straight into objects
  store.reset();
  CHECK(count(path, "SELECT count(*) FROM objects") == 300);
  CHECK(count(path, "SELECT count(*) FROM log") == 0);
  store = state::StateStore::open(path, false);
  auto p1 = object("u-1", "11", R"({"metadata":{"name":"p1"},"v":1})");
  auto p1b = object("u-1", "12", R"({"metadata":{"name":"p1"},"v":2})");
  store->save("pods", rows({{"ns/p1", &p1}}), {}, "");  // watch events: the log
  store->save("pods", rows({{"ns/p1", &p1b}}), {"ns/p2"}, "");
  auto cp = store->load("pods");
  REQUIRE(cp);
  CHECK(cp->objects.size() == 299);
  CHECK(cp->objects.at("ns/p1").json == R"({"metadata":{"name":"p1"},"v":2})");  // the later of the two
  CHECK(cp->objects.at("ns/p1").resource_version == "12");
  CHECK_FALSE(cp->objects.count("ns/p2"));
  CHECK(cp->objects.at("ns/p3").json == page[3].json);  // decompressed from objects
  store.reset();
  CHECK(count(path, "SELECT count(*) FROM log") == 3);
  store = state::StateStore::open(path, false);  // opening folds the log into objects
  // A relist page rewriting p1 after the log's rows for it: the page wins.
  auto p1x = object("u-1", "13", R"({"metadata":{"name":"p1"},"v":"x"})");
  store->save("pods", rows({{"ns/p1", &p1x}}), {}, "");
  page[1] = object("u-1", "20", R"({"metadata":{"name":"p1"},"v":3})");
  store->save("pods", list, {}, "20");
  cp = store->load("pods");
  CHECK(cp->objects.at("ns/p1").json == R"({"metadata":{"name":"p1"},"v":3})");
  CHECK(cp->objects.size() == 300);
  auto p1c = object("u-1", "21", R"({"metadata":{"name":"p1"},"v":4})");
  store->save("pods", rows({{"ns/p1", &p1c}}), {"ns/p0"}, "21");
  store.reset();
  CHECK(count(path, "SELECT count(*) FROM log") == 2);
  store = state::StateStore::open(path, false);  // folds
  cp = store->load("pods");
  REQUIRE(cp);
  CHECK(cp->resource_version == "21");
  CHECK(cp->objects.size() == 299);
  CHECK(cp->objects.at("ns/p1").json == R"({"metadata":{"name":"p1"},"v":4})");
  CHECK_FALSE(cp->objects.count("ns/p0"));
  store.reset();
  CHECK(count(path, "SELECT count(*) FROM log") == 0);
  // Checkpoint rows are compressed: far smaller than the text they hold.
  CHECK(count(path, "SELECT count(*) FROM objects WHERE codec > 0") == 299);
  CHECK(count(path, "SELECT sum(length(object)) FROM objects") * 4 < 299 * static_cast<int64_t>(page[3].json.size()));
}

TEST_CASE("state store: change sets wait in the journal until routed, across reopening, each id once") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  auto a = object("u-a", "2", R"({"v":2})");
  {
    auto store = state::StateStore::open(path, false);
    store->save("cm", rows({{"ns/a", &a}}), {}, "2", {{0, "id-1", R"({"n":1})"}, {0, "id-2", R"({"n":2})"}});
    store->save("cm", {}, {}, "", {{0, "id-3", R"({"n":3})"}, {0, "id-1", R"({"n":1})"}});  // id-1 again: kept once
    CHECK(store->journal_size() == 3);
    store->journal_done({"id-2"});  // out of order: id-1 still waits
    CHECK(store->journal_size() == 2);
  }
  {
    auto store = state::StateStore::open(path, false);
    // id-1 and id-3, and id-2 too: routed out of order, above the oldest
    // unrouted one, it is routed again (the outbox knows it: no handler
    // gets it twice).
    auto pending = store->journal_pending();
    REQUIRE(pending.size() == 3);
    CHECK(pending[0].id == "id-1");
    CHECK(pending[0].json == R"({"n":1})");
    CHECK(pending[1].id == "id-2");
    CHECK(pending[2].id == "id-3");
    store->journal_done({"id-2"});
    CHECK(store->journal_size() == 2);
    store->journal_done({"id-1", "id-3"});
    CHECK(store->journal_size() == 0);
    store->save("cm", {}, {}, "", {{0, "id-4", R"({"n":4})"}});
  }
  {
    auto store = state::StateStore::open(path, false);
    auto pending = store->journal_pending();
    REQUIRE(pending.size() == 1);  // only the one written after everything before was routed
    CHECK(pending[0].id == "id-4");
  }
  CHECK(count(path, "SELECT count(*) FROM log WHERE kind = 2") == 1);  // routed ones are gone from the file
}

// Before schema 2 the journal was its own table and rows were JSON text; a
// store written then keeps its checkpoint and its unrouted change sets.
TEST_CASE("state store: a schema 1 store is converted with its journal and its checkpoint") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  sql(path,
      "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT INTO meta VALUES('schema_version', '1');"
      "CREATE TABLE resources(resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL);"
      "INSERT INTO resources VALUES('configmaps', '42');"
      "CREATE TABLE objects(resource TEXT NOT NULL, key TEXT NOT NULL, uid TEXT NOT NULL,"
      " resource_version TEXT NOT NULL, object TEXT NOT NULL, UNIQUE(resource, key));"
      "INSERT INTO objects VALUES('configmaps', 'ns/a', 'u-a', '41', '{\"data\":{}}');"
      "CREATE TABLE journal(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, json TEXT NOT NULL);"
      "INSERT INTO journal(id, json) VALUES('c/u-a/41', '{\"id\":\"c/u-a/41\"}');");
  auto store = state::StateStore::open(path, false);
  auto cp = store->load("configmaps");
  REQUIRE(cp);
  CHECK(cp->objects.at("ns/a").json == R"({"data":{}})");
  auto pending = store->journal_pending();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].id == "c/u-a/41");
  // The next change set gets a seq after the old ones (routed_through refers to seqs).
  store->save("configmaps", {}, {}, "", {{0, "c/u-a/43", "{}"}});
  pending = store->journal_pending();
  REQUIRE(pending.size() == 2);
  CHECK(pending[1].id == "c/u-a/43");
  CHECK(pending[1].seq > pending[0].seq);
  store.reset();
  CHECK(count(path, "SELECT value FROM meta WHERE key = 'schema_version'") == 2);
}

TEST_CASE("state store: a store of a newer schema is refused with a message that says so") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  sql(path,
      "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES('schema_version', '3');");
  try {
    state::StateStore::open(path, false);
    FAIL("opened");
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("state schema version 3 is not 2") != std::string::npos);
  }
}

// The file is one a user points at: a compressed row that does not decode
// (a damaged or tampered file) is left out and named, never a crash or a
// huge allocation, and the rest of the checkpoint is read.
TEST_CASE("state store: checkpoint rows that do not decode are reported, the rest read") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  std::vector<model::StoredObject> page;
  for (int i = 0; i < 4; ++i)
    page.push_back(
        object("u-" + std::to_string(i), "1",
               R"({"metadata":{"name":"p)" + std::to_string(i) + R"(","labels":{"app":"web","tier":"front"}}})"));
  {
    auto store = state::StateStore::open(path, false);
    store->save("pods", rows({{"ns/p0", &page[0]}, {"ns/p1", &page[1]}, {"ns/p2", &page[2]}, {"ns/p3", &page[3]}}), {},
                "5");
  }
  REQUIRE(count(path, "SELECT count(*) FROM log WHERE codec > 0") == 4);  // a small save: the log
  {
    auto store = state::StateStore::open(path, false);  // folded into objects
  }
  REQUIRE(count(path, "SELECT count(*) FROM objects WHERE codec > 0") == 4);
  sql(path,
      "UPDATE objects SET object = x'00112233' WHERE key = 'ns/p0';"  // not a zstd frame
      // a frame header claiming 2^40 bytes of content
      "UPDATE objects SET object = x'28b52ffd' || x'e0' || x'000000000001' || x'0000' WHERE key = 'ns/p1';"
      "UPDATE objects SET codec = 999 WHERE key = 'ns/p2';");  // no such dictionary
  auto store = state::StateStore::open(path, false);
  auto cp = store->load("pods");
  REQUIRE(cp);
  CHECK(cp->objects.size() == 1);
  CHECK(cp->objects.count("ns/p3") == 1);
  REQUIRE(cp->unreadable.size() == 3);
  std::map<std::string, std::string> why(cp->unreadable.begin(), cp->unreadable.end());
  CHECK(why["ns/p0"] == "not a zstd frame");
  CHECK(why["ns/p1"].find("claiming") != std::string::npos);
  CHECK(why["ns/p2"].find("dictionary 999") != std::string::npos);
}

// The log is folded while running once it is long (here 10 rows): the
// checkpoint reads the same before and after, change sets not yet routed
// stay, routed ones go.
TEST_CASE("state store: a long log is folded while running, keeping what is not routed") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  auto store = state::StateStore::open(path, false, 10);
  std::vector<model::StoredObject> versions;
  for (int v = 0; v < 12; ++v)
    versions.push_back(object("u-a", std::to_string(v), R"({"v":)" + std::to_string(v) + "}"));
  for (int v = 0; v < 12; ++v) {
    std::string id = "id-" + std::to_string(v);
    store->save("cm", rows({{"ns/a", &versions[static_cast<size_t>(v)]}}), {}, std::to_string(v), {{0, id, "{}"}});
    if (v < 8) store->journal_done({id});  // the last four stay unrouted
  }
  auto cp = store->load("cm");
  REQUIRE(cp);
  CHECK(cp->objects.at("ns/a").json == R"({"v":11})");
  auto pending = store->journal_pending();
  REQUIRE(pending.size() == 4);
  CHECK(pending.front().id == "id-8");
  CHECK(pending.back().id == "id-11");
  store.reset();
  CHECK(count(path, "SELECT count(*) FROM log") < 10);
  CHECK(count(path, "SELECT count(*) FROM objects") == 1);
}

// One kubetrail per store: a second one is told the store is in use, and
// --reset-state does not set aside a store another process is using.
TEST_CASE("state store: a store in use by another process is refused, never set aside") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  auto first = state::StateStore::open(path, false);
  auto started = std::chrono::steady_clock::now();
  try {
    state::StateStore::open(path, true);  // even with --reset-state
    FAIL("opened twice");
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("in use by another process") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));  // the lock wait is bounded
  CHECK(std::filesystem::exists(path));
  int others = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path()))
    others += f.path().string().find(".corrupt-") != std::string::npos;
  CHECK(others == 0);
}

// routed_through is read from the file: a tampered value is a clear error
// naming the store, not an exception that escapes as a crash. Failed before
// the value was parsed strictly: std::stoll threw std::out_of_range on the
// first, and the others read silently as 0 (re-routing everything).
TEST_CASE("state store: a routed_through that is not a sequence number is refused with a message") {
  for (const char* bad : {"99999999999999999999999", "x1", "-3", "12abc"}) {
    test::TempDir dir;
    auto path = (dir / "s.db").string();
    state::StateStore::open(path, false).reset();
    sql(path, (std::string("INSERT OR REPLACE INTO meta VALUES('routed_through', '") + bad + "')").c_str());
    INFO(bad);
    try {
      state::StateStore::open(path, false);
      FAIL("opened");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("routed_through") != std::string::npos);
      CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
  }
}
