// Leader election's handover: what the leader publishes as delivered, and
// what a follower keeps until then (ha/handover.hpp).
#include <doctest/doctest.h>

#include "ha/handover.hpp"
#include "model/resource_type.hpp"

using namespace kubetrail;

namespace {

model::ChangeSet change(const std::string& kind, const std::string& ns, const std::string& name,
                        const std::string& rv) {
  model::ChangeSet cs;
  cs.resource = model::resource_type_for(kind == "Deployment" ? "apps/v1" : "v1", kind);
  cs.object_namespace = ns;
  cs.name = name;
  cs.uid = "u-" + name;
  cs.resource_version = rv;
  cs.id = "c/u-" + name + "/" + rv;
  return cs;
}

ha::StreamKey by_resource = [](const model::ChangeSet& cs) { return ha::stream_key(cs, false); };
ha::StreamKey by_namespace = [](const model::ChangeSet& cs) { return ha::stream_key(cs, true); };

std::vector<std::string> names(const std::vector<model::ChangeSet>& v) {
  std::vector<std::string> out;
  for (const auto& cs : v) out.push_back(cs.name);
  return out;
}

}  // namespace

TEST_CASE("handover: stream keys name the resource, and the namespace when watched per namespace") {
  auto cs = change("Deployment", "shop", "web", "5");
  CHECK(ha::stream_key(cs, false) == "deployments.apps");
  CHECK(ha::stream_key(cs, true) == "deployments.apps/shop");
  auto node = change("Node", "", "n1", "5");
  node.resource.namespaced = false;
  CHECK(ha::stream_key(node, true) == "nodes");
}

TEST_CASE("handover: resourceVersions compare as integers, anything else is never covered") {
  CHECK(ha::covered("9", "10"));  // not as strings: "9" > "10"
  CHECK(ha::covered("10", "10"));
  CHECK_FALSE(ha::covered("11", "10"));
  CHECK_FALSE(ha::covered("abc", "10"));
  CHECK_FALSE(ha::covered("5", ""));
  CHECK_FALSE(ha::covered("", "5"));
}

TEST_CASE("handover: progress moves over the done prefix of a stream only") {
  ha::DeliveryProgress p(by_resource);
  p.begin(change("ConfigMap", "a", "one", "10"), 1);
  p.begin(change("ConfigMap", "a", "two", "11"), 2);
  p.begin(change("ConfigMap", "a", "three", "12"), 1);
  CHECK(p.delivered_through().empty());
  p.end("c/u-three/12");  // done out of order: "one" still holds the stream back
  CHECK(p.delivered_through().empty());
  p.end("c/u-one/10");
  CHECK(p.delivered_through().at("configmaps") == "10");
  p.end("c/u-two/11");  // one of its two chains
  CHECK(p.delivered_through().at("configmaps") == "10");
  p.end("c/u-two/11");
  CHECK(p.delivered_through().at("configmaps") == "12");
  p.end("c/u-unknown/1");  // an outbox leftover of an earlier run: ignored
  CHECK(p.delivered_through().size() == 1);
}

TEST_CASE("handover: streams advance apart, and unrouted change sets are done at once") {
  ha::DeliveryProgress p(by_namespace);
  p.begin(change("ConfigMap", "a", "one", "20"), 1);
  p.begin(change("ConfigMap", "b", "two", "15"), 0);  // no route: nothing to wait for
  auto through = p.delivered_through();
  CHECK(through.at("configmaps/b") == "15");
  CHECK(through.count("configmaps/a") == 0);
  p.settle_all();  // a reload: the outbox holds what was in flight
  CHECK(p.delivered_through().at("configmaps/a") == "20");
}

TEST_CASE("handover: a new leader starts from the last leader's progress and moves on from it") {
  ha::DeliveryProgress p(by_resource);
  p.seed({{"configmaps", "30"}, {"deployments.apps", "7"}});
  p.begin(change("ConfigMap", "a", "one", "31"), 1);
  p.end("c/u-one/31");
  auto through = p.delivered_through();
  CHECK(through.at("configmaps") == "31");
  CHECK(through.at("deployments.apps") == "7");
}

TEST_CASE("handover: a follower keeps what the leader has not confirmed, per stream, in order") {
  ha::HandoverBuffer b(by_resource, 100);
  b.push(change("ConfigMap", "a", "c1", "10"));
  b.push(change("Deployment", "a", "d1", "11"));
  b.push(change("ConfigMap", "a", "c2", "12"));
  b.push(change("ConfigMap", "a", "odd", "x13"));  // not an integer: kept
  // What the leader confirms comes out, oldest first: a follower keeps it
  // in its history (before 2026-12-05 it was dropped).
  CHECK(names(b.take_covered({{"configmaps", "12"}})) ==
        std::vector<std::string>{"c1", "c2"});  // deployments: nothing confirmed yet
  CHECK(b.size() == 2);
  CHECK(b.take_covered({{"deployments.apps", "10"}}).empty());  // confirms an earlier one only
  CHECK(names(b.take()) == std::vector<std::string>{"d1", "odd"});
  CHECK(b.size() == 0);
}

TEST_CASE("handover: a full follower buffer drops its oldest and counts them") {
  ha::HandoverBuffer b(by_resource, 2);
  for (int i = 1; i <= 5; ++i) b.push(change("ConfigMap", "a", "c" + std::to_string(i), std::to_string(i)));
  CHECK(b.dropped() == 3);
  CHECK(names(b.take()) == std::vector<std::string>{"c4", "c5"});
}
