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
