// watch::Checkpoint: change sets reach the sink only once the save that
// holds them and the objects they cover has succeeded; a failed save loses
// nothing and is made good by the next commit.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>

#include "helpers.hpp"
#include "state/state_store.hpp"
#include "watch/checkpoint.hpp"

using namespace kubetrail;

namespace {

model::ChangeSet change(const std::string& id) {
  model::ChangeSet cs;
  cs.id = id;
  cs.cluster = "c";
  cs.resource = model::resource_type_for("v1", "ConfigMap");
  cs.object_namespace = "ns";
  cs.name = "a";
  return cs;
}

model::StoredObject object(const std::string& rv) {
  model::StoredObject o;
  o.uid = "u-a";
  o.resource_version = rv;
  o.json = R"({"rv":")" + rv + R"("})";
  return o;
}

}  // namespace

// Issue 15: each change set was handed on alone (a lock and a wake-up of
// the delivery thread per event); now those of one commit (one read) go
// together, in order, and a commit with none hands on nothing.
TEST_CASE("checkpoint: without a state store the change sets of one commit are handed on together, in order") {
  std::vector<std::vector<std::string>> got;
  watch::Checkpoint cp(nullptr, "configmaps/v1", "configmaps", [&](std::vector<model::ChangeSet>&& batch) {
    got.emplace_back();
    for (const auto& cs : batch) got.back().push_back(cs.id);
  });
  cp.emit(change("c/u-a/1"));
  cp.emit(change("c/u-a/2"));
  CHECK(got.empty());
  CHECK(cp.waiting() == 2);
  CHECK(cp.commit(false, {}, "2", model::ObjectStore{}));
  CHECK(got == std::vector<std::vector<std::string>>{{"c/u-a/1", "c/u-a/2"}});
  CHECK(cp.waiting() == 0);
  CHECK(cp.commit(true, {}, "2", model::ObjectStore{}));
  CHECK(got.size() == 1);
}

TEST_CASE("checkpoint: change sets wait for the save that holds them, and a failed save loses nothing") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  auto store = state::StateStore::open(path, false);
  std::vector<std::string> got;
  watch::Checkpoint cp(store.get(), "configmaps/v1", "configmaps", [&](std::vector<model::ChangeSet>&& batch) {
    for (const auto& cs : batch) got.push_back(cs.id);
  });
  model::ObjectStore cache;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  cache.put("ns/a", object("1"));
  cp.touched("ns/a");
  cp.emit(change("c/u-a/1"));
  CHECK(got.empty());
  CHECK(cp.waiting() == 1);

  // The disk takes nothing (a file size limit at the log's size): the save
  // fails, the change set waits, the object stays marked.
  const auto log_size = std::filesystem::file_size(path + "-log");
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit none = old;
  none.rlim_cur = log_size;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &none) == 0);
  const bool saved = cp.commit(false, t0, "1", cache);
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
  std::signal(SIGXFSZ, old_handler);
  CHECK_FALSE(saved);
  CHECK(got.empty());
  CHECK(cp.waiting() == 1);
  CHECK(store->journal_size() == 0);

  // The next commit writes both, then hands the change set on.
  CHECK(cp.commit(false, t0, "1", cache));
  CHECK(got == std::vector<std::string>{"c/u-a/1"});
  CHECK(cp.waiting() == 0);
  auto pending = store->journal_pending();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].id == "c/u-a/1");

  // Progress without a change set (noise) is written at most once a second.
  cache.put("ns/a", object("2"));
  cp.touched("ns/a");
  const auto before = std::filesystem::file_size(path + "-log");
  CHECK(cp.commit(false, t0 + std::chrono::milliseconds(500), "2", cache));
  CHECK(std::filesystem::file_size(path + "-log") == before);
  CHECK(cp.commit(false, t0 + std::chrono::milliseconds(1500), "2", cache));
  CHECK(std::filesystem::file_size(path + "-log") > before);
  store.reset();
  store = state::StateStore::open(path, false);
  auto loaded = store->load("configmaps/v1");
  REQUIRE(loaded);
  CHECK(loaded->objects.at("ns/a").resource_version == "2");
  CHECK(loaded->resource_version == "2");
}

// After a list, the commit drops the rows the store holds that the cache no
// longer has - whether they were saved in this run or read back at start,
// folded into the snapshot or still in the log - and keeps the rest.
TEST_CASE("checkpoint: a prune after a list deletes the stored rows the cache no longer has") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  {
    auto store = state::StateStore::open(path, false);
    auto a = object("1"), b = object("2"), c = object("3");
    store->save("configmaps/v1", {{"ns/a", &a}, {"ns/b", &b}, {"ns/c", &c}}, {}, "3");
  }
  auto store = state::StateStore::open(path, false);  // a, b, c now in the snapshot
  auto d = object("4");
  store->save("configmaps/v1", {{"ns/d", &d}}, {}, "4");  // d in the log
  REQUIRE(store->keys("configmaps/v1") == std::vector<std::string>{"ns/a", "ns/b", "ns/c", "ns/d"});
  watch::Checkpoint cp(store.get(), "configmaps/v1", "configmaps", [](std::vector<model::ChangeSet>&&) {});
  model::ObjectStore cache;  // the list found a and d
  cache.put("ns/a", object("1"));
  cache.put("ns/d", object("4"));
  cp.prune_at_next_commit();
  REQUIRE(cp.commit(true, t0, "5", cache));
  CHECK(store->keys("configmaps/v1") == std::vector<std::string>{"ns/a", "ns/d"});
  auto loaded = store->load("configmaps/v1");
  REQUIRE(loaded);
  CHECK(loaded->objects.size() == 2);
  CHECK(loaded->resource_version == "5");
  // Without a prune, a key the cache lacks stays (only a list proves it gone).
  cache.erase("ns/a");
  REQUIRE(cp.commit(true, t0 + std::chrono::seconds(2), "6", cache));
  CHECK(store->keys("configmaps/v1").size() == 2);
}

// Issue 15: the journal, delivery and the history each made the change
// set's JSON again (three renderings of 17 KB for a Pod). The checkpoint
// now renders it once, for the journal, and hands on that very rendering.
// Failed before: nothing handed on carried a rendering.
TEST_CASE("checkpoint: a change set is rendered once, for the journal, and handed on with that rendering") {
  test::TempDir dir;
  auto store = state::StateStore::open((dir / "s.db").string(), false);
  std::vector<model::ChangeSet> got;
  watch::Checkpoint cp(store.get(), "configmaps/v1", "configmaps", [&](std::vector<model::ChangeSet>&& batch) {
    for (auto& cs : batch) got.push_back(std::move(cs));
  });
  model::ObjectStore cache;
  cache.put("ns/a", object("1"));
  cp.touched("ns/a");
  cp.emit(change("c/u-a/1"));
  REQUIRE(cp.commit(false, std::chrono::steady_clock::time_point{} + std::chrono::hours(1), "1", cache));
  REQUIRE(got.size() == 1);
  REQUIRE(got[0].rendered);
  CHECK(got[0].json() == got[0].to_json());
  // The padding plugins are promised is part of the rendering: zero bytes.
  CHECK(got[0].rendered->size() == got[0].json().size() + model::ChangeSet::kJsonPadding);
  CHECK(got[0].rendered->find_first_not_of('\0', got[0].json().size()) == std::string::npos);
  auto pending = store->journal_pending();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].json == got[0].json());
}
