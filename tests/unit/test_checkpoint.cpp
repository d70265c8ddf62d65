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

TEST_CASE("checkpoint: without a state store change sets are handed on at once") {
  std::vector<std::string> got;
  watch::Checkpoint cp(nullptr, "configmaps/v1", "configmaps", [&](model::ChangeSet&& cs) { got.push_back(cs.id); });
  cp.emit(change("c/u-a/1"));
  CHECK(got == std::vector<std::string>{"c/u-a/1"});
  CHECK(cp.waiting() == 0);
  CHECK(cp.commit(true, {}, "1", model::ObjectStore{}));
}

TEST_CASE("checkpoint: change sets wait for the save that holds them, and a failed save loses nothing") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  auto store = state::StateStore::open(path, false);
  std::vector<std::string> got;
  watch::Checkpoint cp(store.get(), "configmaps/v1", "configmaps",
                       [&](model::ChangeSet&& cs) { got.push_back(cs.id); });
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
