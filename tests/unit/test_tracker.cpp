// watch::Tracker: the per-event step run's informers and replay share.
#include <doctest/doctest.h>

#include "watch/tracker.hpp"

using namespace kubetrail;

namespace {

struct Fixture {
  diff::ChangeDetector detector{"c", {}};
  watch::Tracker tracker{detector, model::resource_type_for("v1", "ConfigMap")};
  simdjson::dom::parser parser;
  simdjson::dom::element parse(const std::string& text) {
    keep = text;
    return parser.parse(keep).value();
  }
  std::string keep;
  static std::string cm(const std::string& uid, const std::string& rv, const std::string& value) {
    return R"({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","uid":")" + uid +
           R"(","resourceVersion":")" + rv + R"("},"data":{"k":")" + value + R"("}})";
  }
};

}  // namespace

TEST_CASE("tracker: another uid under a cached name is Deleted (old uid) then Added (new uid)") {
  Fixture f;
  REQUIRE(f.tracker.seed(f.parse(Fixture::cm("u1", "1", "x"))));
  auto a = f.tracker.apply(model::WatchEventType::modified, f.parse(Fixture::cm("u2", "5", "y")), "t");
  CHECK(a.error.empty());
  REQUIRE(a.replaced);
  CHECK(a.replaced->type == model::ChangeType::deleted);
  CHECK(a.replaced->id == "c/u1/deleted");
  REQUIRE(a.change);
  CHECK(a.change->type == model::ChangeType::added);
  CHECK(a.change->id == "c/u2/5");
  CHECK_FALSE(a.change->catch_up);
}

TEST_CASE("tracker: a list item compared with the cache is catch-up, and noise is nothing") {
  Fixture f;
  REQUIRE(f.tracker.seed(f.parse(Fixture::cm("u1", "1", "x"))));
  auto same =
      f.tracker.apply(model::WatchEventType::modified, f.parse(Fixture::cm("u1", "1", "x")), "t", nullptr, true);
  CHECK_FALSE(same.replaced);
  CHECK_FALSE(same.change);
  auto changed =
      f.tracker.apply(model::WatchEventType::modified, f.parse(Fixture::cm("u1", "2", "z")), "t", nullptr, true);
  REQUIRE(changed.change);
  CHECK(changed.change->catch_up);
  CHECK(changed.change->changes.size() == 1);
  auto gone = f.tracker.vanished("ns/a", "t", "9");
  REQUIRE(gone);
  CHECK(gone->catch_up);
  CHECK(gone->id == "c/u1/deleted");
  CHECK(f.tracker.store().size() == 0);
}

TEST_CASE("tracker: an event that cannot be handled says why and still reports what it replaced") {
  Fixture f;
  REQUIRE(f.tracker.seed(f.parse(Fixture::cm("u1", "1", "x"))));
  // An object without metadata.name cannot be keyed: an error, not a crash or a drop of the cache.
  auto bad = f.tracker.apply(model::WatchEventType::modified, f.parse(R"({"kind":"ConfigMap","metadata":{}})"), "t");
  CHECK_FALSE(bad.error.empty());
  CHECK_FALSE(bad.change);
  CHECK(f.tracker.store().size() == 1);  // the cache is as it was
}
