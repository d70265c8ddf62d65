#include <doctest/doctest.h>

#include "config/config.hpp"
#include "route/route.hpp"

using namespace kubetrail;

namespace {
model::ChangeSet change(model::ChangeType t, std::string ns, std::vector<std::string> paths) {
  model::ChangeSet cs;
  cs.type = t;
  cs.resource = model::resource_type_for("apps/v1", "Deployment");
  cs.object_namespace = std::move(ns);
  cs.name = "web";
  for (auto& p : paths) cs.changes.push_back({model::FieldOp::replace, p, "1", "2"});
  return cs;
}
}  // namespace

TEST_CASE("routes match by resource, namespace, type and path") {
  auto cfg = config::parse(R"(
[[handlers]]
name = "a"
plugin = "log"
[[handlers]]
name = "b"
plugin = "log"
[[routes]]
name = "images"
match = { resources = ["deployments.apps"], namespaces = ["shop"], paths = ["spec.template.spec.containers[*].image"] }
chain = ["a", "b"]
[[routes]]
name = "deletes"
match = { resources = ["Deployment"], types = ["Deleted"] }
chain = ["b"]
[[routes]]
name = "pods"
match = { resources = ["pods"] }
chain = ["a"]
)",
                           "t.toml");
  route::Router router(cfg.routes);
  auto names = [&](const model::ChangeSet& cs) {
    std::vector<std::string> out;
    for (auto* r : router.match(cs)) out.push_back(r->name);
    return out;
  };
  CHECK(names(change(model::ChangeType::modified, "shop", {"spec.template.spec.containers[name=web].image"})) ==
        std::vector<std::string>{"images"});
  CHECK(names(change(model::ChangeType::modified, "shop", {"spec.replicas"})).empty());
  CHECK(names(change(model::ChangeType::modified, "other", {"spec.template.spec.containers[name=web].image"})).empty());
  CHECK(names(change(model::ChangeType::deleted, "shop", {})) == std::vector<std::string>{"images", "deletes"});
  auto r = router.match(change(model::ChangeType::modified, "shop", {"spec.template.spec.containers[name=x].image"}));
  REQUIRE(r.size() == 1);
  CHECK(r[0]->chain == std::vector<std::string>{"a", "b"});
}

TEST_CASE("a route without match takes everything") {
  auto cfg = config::parse("[[handlers]]\nname = \"a\"\nplugin = \"log\"\n[[routes]]\nchain = [\"a\"]\n", "t.toml");
  route::Router router(cfg.routes);
  CHECK(router.match(change(model::ChangeType::added, "x", {})).size() == 1);
}

TEST_CASE("a resource is named by plural, plural.group, kind in any case, or *.GROUP") {
  auto d = model::resource_type_for("apps/v1", "Deployment");
  for (const char* n : {"deployments", "deployments.apps", "Deployment", "deployment", "DEPLOYMENT", "*.apps"})
    CHECK_MESSAGE(d.named_by(n), n);
  for (const char* n : {"deploy.apps", "deployments.batch", "*.batch", "*.", "*", "pods"})
    CHECK_FALSE_MESSAGE(d.named_by(n), n);
  auto cm = model::resource_type_for("v1", "ConfigMap");
  CHECK(cm.named_by("configmaps"));
  CHECK_FALSE(cm.named_by("*.apps"));
  CHECK_FALSE(cm.named_by("*."));  // not a way to say "the core group"
}

TEST_CASE("match.where routes on the object's field values: exact, any of a list, or /regex/ - absent never matches") {
  // Issue 18, item 4: kubernetes-event-exporter's routing by Event type,
  // reason and involved object.
  auto cfg = config::parse(R"(
[[handlers]]
name = "oncall"
plugin = "log"
[[routes]]
name = "pod trouble"
match = { resources = ["events"], where = { type = "Warning", reason = ["BackOff", "/^Failed/"], involvedObject.kind = "Pod" } }
chain = ["oncall"]
)",
                           "kubetrail.toml");
  // involvedObject.kind, a dotted TOML key, is a nested table: one path.
  // (In path order: TOML tables keep none.)
  REQUIRE(cfg.routes[0].match.where.size() == 3);
  CHECK(cfg.routes[0].match.where[0].first == "involvedObject.kind");
  CHECK(cfg.diff.field_paths == std::vector<std::string>{"involvedObject.kind", "reason", "type"});
  route::Router router(cfg.routes);
  auto event = [](std::vector<std::pair<std::string, std::string>> fields) {
    model::ChangeSet cs;
    cs.type = model::ChangeType::added;
    cs.resource = model::resource_type_for("v1", "Event");
    cs.fields = std::move(fields);
    return cs;
  };
  auto routed = [&](const model::ChangeSet& cs) { return router.match(cs).size(); };
  CHECK(routed(event({{"type", "Warning"}, {"reason", "BackOff"}, {"involvedObject.kind", "Pod"}})) == 1);
  CHECK(routed(event({{"type", "Warning"}, {"reason", "FailedScheduling"}, {"involvedObject.kind", "Pod"}})) == 1);
  CHECK(routed(event({{"type", "Normal"}, {"reason", "BackOff"}, {"involvedObject.kind", "Pod"}})) == 0);
  CHECK(routed(event({{"type", "Warning"}, {"reason", "Unhealthy"}, {"involvedObject.kind", "Pod"}})) == 0);
  CHECK(routed(event({{"type", "Warning"}, {"reason", "NotFailed"}, {"involvedObject.kind", "Pod"}})) == 0);
  CHECK(routed(event({{"type", "Warning"}, {"reason", "BackOff"}, {"involvedObject.kind", "Node"}})) == 0);
  CHECK(routed(event({{"type", "Warning"}, {"reason", "BackOff"}})) == 0);  // a field the object lacks
  CHECK(routed(event({})) == 0);
}

TEST_CASE("a bad match.where is an error naming the route's key") {
  auto error = [](const std::string& where) {
    try {
      config::parse("[[handlers]]\nname = \"h\"\nplugin = \"log\"\n[[routes]]\nmatch = { where = " + where +
                        " }\nchain = [\"h\"]\n",
                    "kubetrail.toml");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(parsed)");
  };
  CHECK(error(R"({ reason = "/Back(/" })").find("kubetrail.toml:5") != std::string::npos);
  CHECK(error(R"({ reason = "/Back(/" })").find("routes[0].match.where.reason\": bad regular expression /Back(/") !=
        std::string::npos);
  CHECK(error(R"({ count = 3 })").find("where.count\": expected a string or a list of strings") != std::string::npos);
  CHECK(error(R"({ reason = [] })").find("an empty list matches nothing") != std::string::npos);
  CHECK(error("{ reason = \"/" + std::string(5000, '(') + "a" + std::string(5000, ')') + "/\" }")
            .find("is too long (at most 256 characters)") != std::string::npos);
  // RE2's syntax, as Go's regexp and Prometheus have it: no lookaround, no
  // backreferences (what makes linear time possible), said with the key.
  CHECK(error(R"({ reason = "/Back(?=Off)/" })")
            .find("where.reason\": bad regular expression /Back(?=Off)/: invalid perl operator: (?= (RE2 syntax") !=
        std::string::npos);
  CHECK(error(R"({ reason = '/(a)\1/' })").find("bad regular expression /(a)\\1/: invalid escape sequence: \\1") !=
        std::string::npos);
  CHECK(error(R"({ "spec.containers[*].image" = "x" })").find("not a dotted path") != std::string::npos);
}

TEST_CASE("a where regex matches in linear time: a pattern that backtracks cannot hang routing on an object's value") {
  // The value is the object's to choose, up to the 1 KiB kubetrail reads.
  // std::regex, a backtracking engine, took about 2^n steps for /(a+)+b/
  // on n a's: one label value held the routing thread for ever, and every
  // change set behind it (this test hung before, and was killed by
  // `timeout 20`). RE2 matches in time linear in the value.
  auto cfg = config::parse(R"(
[[handlers]]
name = "h"
plugin = "log"
[[routes]]
match = { where = { "metadata.labels.tier" = ["/(a+)+b/", "/^(x|x?)+y$/"] } }
chain = ["h"]
)",
                           "kubetrail.toml");
  route::Router router(cfg.routes);
  auto routed = [&](std::string value) {
    model::ChangeSet cs;
    cs.type = model::ChangeType::added;
    cs.fields = {{"metadata.labels.tier", std::move(value)}};
    return router.match(cs).size();
  };
  CHECK(routed(std::string(1024, 'a')) == 0);
  CHECK(routed(std::string(1024, 'x')) == 0);
  // Built with append(), not `std::string(n, c) + "b"`: GCC 12 reports a
  // false -Warray-bounds inside libstdc++ for that rvalue operator+ once the
  // standard headers come precompiled (CMakeLists.txt).
  CHECK(routed(std::string(1023, 'a').append("b")) == 1);
  CHECK(routed(std::string(1023, 'x').append("y")) == 1);
}
