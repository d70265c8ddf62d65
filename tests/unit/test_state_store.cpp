// The state store's checkpoint rows: what save() writes, load() reads back,
// and stores written by an older layout keep their checkpoint.
#include <doctest/doctest.h>
#include <sqlite3.h>

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
