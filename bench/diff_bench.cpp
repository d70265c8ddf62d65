// diff_bench: the cost of turning one watch event into a change set (prune,
// compare with the cached object, diff, build the change set) against the
// cost of just parsing the event's object and the cached one with simdjson,
// the floor any JSON client pays. Target (issue 3 / PERFORMANCE.md): diffing
// costs no more than 2x parsing.
//
// Input: the Deployment and Pod fixtures (real API server objects with
// managedFields), one field changed per event (an image, alternating), and a
// status-only update (noise: the common case in a real cluster).
//
// Prints min and median of several runs, as ratios; CPU time from getrusage.
// usage: diff_bench [ITERATIONS [CASE-SUBSTRING]]
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "diff/diff.hpp"
#include "kube/object_store.hpp"

using namespace kubetrail;

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr int kVersions = 1000;

struct Case {
  std::string name;
  kube::ResourceType type;
  std::vector<std::string> events;  // versions of the object, each with its own resourceVersion
};

Case make_case(const std::string& fixture, bool status_only) {
  auto obj = nlohmann::json::parse(read(std::string(KUBETRAIL_SOURCE_DIR) + "/tests/fixtures/" + fixture + ".json"));
  Case c;
  c.name = fixture + (status_only ? " (status-only update)" : " (image changed)");
  c.type = kube::resource_type_for(obj["apiVersion"].get<std::string>(), obj["kind"].get<std::string>());
  auto& containers =
      obj["spec"].contains("template") ? obj["spec"]["template"]["spec"]["containers"] : obj["spec"]["containers"];
  for (int i = 0; i < kVersions; ++i) {
    if (status_only)
      obj["status"]["observedGeneration"] = i;
    else
      containers[0]["image"] = "registry.example.com/app:" + std::to_string(i % 2);
    obj["metadata"]["resourceVersion"] = std::to_string(100000 + i);
    c.events.push_back(obj.dump());
  }
  return c;
}

// A server's OpenAPI v3 document for the fixture's group-version, reduced to
// the PodSpec lists with merge keys: `run` learns every kind's keys this way,
// and list-key lookups then go by schema path (a separate cost to watch).
std::string openapi_document(const kube::ResourceType& type) {
  using nlohmann::json;
  json container = {{"type", "object"},
                    {"properties",
                     {{"ports",
                       {{"type", "array"},
                        {"x-kubernetes-list-type", "map"},
                        {"x-kubernetes-list-map-keys", {"containerPort", "protocol"}}}},
                      {"env", {{"type", "array"}, {"x-kubernetes-patch-merge-key", "name"}}},
                      {"volumeMounts", {{"type", "array"}, {"x-kubernetes-patch-merge-key", "mountPath"}}}}}};
  json keyed_by_name = {{"type", "array"},
                        {"x-kubernetes-list-type", "map"},
                        {"x-kubernetes-list-map-keys", {"name"}},
                        {"items", {{"$ref", "#/components/schemas/Container"}}}};
  json pod_spec = {{"type", "object"},
                   {"properties",
                    {{"containers", keyed_by_name},
                     {"initContainers", keyed_by_name},
                     {"volumes", {{"type", "array"}, {"x-kubernetes-patch-merge-key", "name"}}}}}};
  json gvk = json::array({{{"group", type.group}, {"version", type.version}, {"kind", type.kind}}});
  json top = type.kind == "Pod"
                 ? json{{"type", "object"},
                        {"x-kubernetes-group-version-kind", gvk},
                        {"properties", {{"spec", {{"$ref", "#/components/schemas/PodSpec"}}}}}}
                 : json{{"type", "object"},
                        {"x-kubernetes-group-version-kind", gvk},
                        {"properties",
                         {{"spec",
                           {{"type", "object"},
                            {"properties",
                             {{"template",
                               {{"type", "object"},
                                {"properties", {{"spec", {{"$ref", "#/components/schemas/PodSpec"}}}}}}}}}}}}}};
  return json{{"components", {{"schemas", {{"Top", top}, {"PodSpec", pod_spec}, {"Container", container}}}}}}.dump();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 20000;
  constexpr int kRuns = 5;
  std::printf("%-40s %12s %12s %10s %10s\n", "case", "parse µs/ev", "diff µs/ev", "ratio min", "ratio med");
  for (int variant : {0, 1, 2}) {  // image changed; status-only; image changed with keys from OpenAPI
    bool status_only = variant == 1, openapi = variant == 2;
    for (const char* fixture : {"deployment", "pod"}) {
      Case c = make_case(fixture, status_only);
      if (openapi) c.name = fixture + std::string(" (image, OpenAPI keys)");
      if (argc > 2 && c.name.find(argv[2]) == std::string::npos) continue;  // a case filter, for profiling
      std::string openapi_text = openapi_document(c.type);
      simdjson::dom::parser openapi_parser;
      simdjson::dom::element openapi_doc = openapi_parser.parse(openapi_text).value();
      std::vector<simdjson::padded_string> padded;
      for (auto& e : c.events) padded.emplace_back(e);
      std::vector<double> parse_t, diff_t, ratios;
      for (int run = 0; run < kRuns; ++run) {
        // Peer: parse the new object and the cached one (two parses per event).
        simdjson::dom::parser p1, p2;
        size_t sink = 0;
        double t0 = cpu_seconds();
        for (int i = 0; i < iterations; ++i) {
          auto a = p1.parse(padded[i % kVersions]).value();
          auto b = p2.parse(padded[(i + 1) % kVersions]).value();
          sink += a.type() == b.type();
        }
        double parse = (cpu_seconds() - t0) / iterations;
        // kubetrail: the whole per-event path.
        diff::ChangeDetector detector("bench", {});
        if (openapi && !detector.learn_openapi(c.type, openapi_doc)) {
          std::fprintf(stderr, "the bench's OpenAPI document has no schema for %s\n", c.type.kind.c_str());
          return 1;
        }
        kube::ObjectStore store;
        simdjson::dom::parser p;
        size_t produced = 0;
        t0 = cpu_seconds();
        for (int i = 0; i < iterations; ++i) {
          const auto& text = padded[i % kVersions];
          auto doc = p.parse(text).value();
          // Each event a new resourceVersion, as the API server would send;
          // the parsed text at hand, as the informer has its frame.
          diff::SourceText source{&p, std::string_view(text.data(), text.size()), {}};
          auto r = detector.observe(i == 0 ? kube::WatchEventType::added : kube::WatchEventType::modified, c.type, doc,
                                    store, "t", &source);
          produced += r.ok() && r.value().has_value();
        }
        double diff = (cpu_seconds() - t0) / iterations;
        parse_t.push_back(parse * 1e6);
        diff_t.push_back(diff * 1e6);
        ratios.push_back(diff / parse);
        if (sink == 0 && produced == SIZE_MAX) std::puts("");  // keep the loops observable
      }
      std::printf("%-40s %12.2f %12.2f %9.2fx %9.2fx\n", c.name.c_str(), median(parse_t), median(diff_t),
                  *std::min_element(ratios.begin(), ratios.end()), median(ratios));
    }
  }
  std::printf("target: ratio <= 2.0 (diffing costs no more than twice parsing)\n");
  return 0;
}
