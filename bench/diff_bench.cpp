// diff_bench: the cost of turning one watch event into a change set (prune,
// compare with the cached object, diff, build the change set) against the
// cost of just parsing the event's object and the cached one with simdjson,
// the floor any JSON client pays. Target (issue 3 / PERFORMANCE.md): diffing
// costs no more than 2x parsing.
//
// Input: the Deployment and Pod fixtures (real API server objects with
// managedFields), and the Pod with a running Pod's status (~10 KB as kubectl
// prints it; see make_running), one field changed per event (an image,
// alternating), and a status-only update (noise: the common case in a real
// cluster). "bytes" is the size of one event's object as sent (compact).
//
// Then the framer (kube::JsonFramer: where each watch event ends in the
// stream, before it is parsed) against simdjson parsing the same events:
// framing reads every byte once, as parsing does, and should cost a
// fraction of it - also for real objects, whose managedFields keys are full
// of escapes.
//
// Prints min and median of several runs, as ratios; CPU time from getrusage.
// usage: diff_bench [ITERATIONS [CASE-SUBSTRING]]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "diff/diff.hpp"
#include "kube/watch_stream.hpp"
#include "model/object_store.hpp"

using namespace kubetrail;

namespace {

using bench::cpu_seconds;
using bench::read;

constexpr int kVersions = 1000;

struct Case {
  std::string name;
  model::ResourceType type;
  std::vector<std::string> events;  // versions of the object, each with its own resourceVersion
};

// What a running Pod carries besides the fixture's spec, as the API server
// sends it: the kubelet's status (conditions, container statuses with image
// and container IDs) and its managedFields entry for it. With it the Pod is
// the ~10 KB of issue 3 (as kubectl prints it); status is noise to kubetrail
// by default, so this case shows the parse-and-skip cost the fixture alone
// does not.
void make_running(nlohmann::json& pod) {
  using nlohmann::json;
  const std::string t = "2026-11-23T05:40:12Z";
  json conditions = json::array();
  for (const char* type : {"Initialized", "Ready", "ContainersReady", "PodScheduled"})
    conditions.push_back({{"type", type}, {"status", "True"}, {"lastProbeTime", nullptr}, {"lastTransitionTime", t}});
  json statuses = json::array(), status_fields = json::object();
  for (const auto& c : pod["spec"]["containers"]) {
    std::string name = c["name"];
    statuses.push_back({{"name", name},
                        {"state", {{"running", {{"startedAt", t}}}}},
                        {"lastState", json::object()},
                        {"ready", true},
                        {"restartCount", 0},
                        {"image", c["image"]},
                        {"imageID", "registry.example.com/" + name + "@sha256:" + std::string(64, 'a')},
                        {"containerID", "containerd://" + std::string(64, 'b')},
                        {"started", true}});
    status_fields["k:{\"name\":\"" + name + "\"}"] = {
        {".", json::object()},           {"f:containerID", json::object()},
        {"f:image", json::object()},     {"f:imageID", json::object()},
        {"f:lastState", json::object()}, {"f:name", json::object()},
        {"f:ready", json::object()},     {"f:restartCount", json::object()},
        {"f:started", json::object()},   {"f:state", {{"f:running", {{"f:startedAt", json::object()}}}}}};
  }
  pod["status"] = {{"phase", "Running"},
                   {"conditions", conditions},
                   {"hostIP", "10.0.3.17"},
                   {"podIP", "10.244.3.41"},
                   {"podIPs", {{{"ip", "10.244.3.41"}}}},
                   {"startTime", t},
                   {"containerStatuses", statuses},
                   {"qosClass", "Burstable"}};
  json condition_fields = json::object();
  for (const char* type : {"Initialized", "Ready", "ContainersReady", "PodScheduled"})
    condition_fields["k:{\"type\":\"" + std::string(type) + "\"}"] = {{".", json::object()},
                                                                      {"f:lastProbeTime", json::object()},
                                                                      {"f:lastTransitionTime", json::object()},
                                                                      {"f:status", json::object()},
                                                                      {"f:type", json::object()}};
  pod["metadata"]["managedFields"].push_back(
      {{"apiVersion", "v1"},
       {"fieldsType", "FieldsV1"},
       {"fieldsV1",
        {{"f:status",
          {{"f:conditions", condition_fields},
           {"f:containerStatuses", status_fields},
           {"f:hostIP", json::object()},
           {"f:phase", json::object()},
           {"f:podIP", json::object()},
           {"f:podIPs",
            {{".", json::object()}, {"k:{\"ip\":\"10.244.3.41\"}", {{".", json::object()}, {"f:ip", json::object()}}}}},
           {"f:startTime", json::object()}}}}},
       {"manager", "kubelet"},
       {"operation", "Update"},
       {"subresource", "status"},
       {"time", t}});
}

Case make_case(const std::string& fixture, bool status_only) {
  const bool running = fixture == "running pod";
  auto obj = nlohmann::json::parse(
      read(std::string(KUBETRAIL_SOURCE_DIR) + "/tests/fixtures/" + (running ? "pod" : fixture) + ".json"));
  if (running) make_running(obj);
  Case c;
  c.name = fixture + (status_only ? " (status-only update)" : " (image changed)");
  c.type = model::resource_type_for(obj["apiVersion"].get<std::string>(), obj["kind"].get<std::string>());
  auto& containers =
      obj["spec"].contains("template") ? obj["spec"]["template"]["spec"]["containers"] : obj["spec"]["containers"];
  for (int i = 0; i < kVersions; ++i) {
    if (status_only && running)
      obj["status"]["containerStatuses"][0]["restartCount"] = i;
    else if (status_only)
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
std::string openapi_document(const model::ResourceType& type) {
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
  // "whole-DOM µs/ev": the same path with the event parsed whole (before
  // diff/hollow_parse.hpp), for comparison in the same run.
  std::printf("%-36s %7s %12s %12s %10s %10s %16s\n", "case", "bytes", "parse µs/ev", "diff µs/ev", "ratio min",
              "ratio med", "whole-DOM µs/ev");
  for (int variant : {0, 1, 2}) {  // image changed; status-only; image changed with keys from OpenAPI
    bool status_only = variant == 1, openapi = variant == 2;
    for (const char* fixture : {"deployment", "pod", "running pod"}) {
      Case c = make_case(fixture, status_only);
      if (openapi) c.name = fixture + std::string(" (image, OpenAPI keys)");
      if (argc > 2 && c.name.find(argv[2]) == std::string::npos) continue;  // a case filter, for profiling
      std::string openapi_text = openapi_document(c.type);
      simdjson::dom::parser openapi_parser;
      simdjson::dom::element openapi_doc = openapi_parser.parse(openapi_text).value();
      std::vector<simdjson::padded_string> padded, frames;
      for (auto& e : c.events) {
        padded.emplace_back(e);
        frames.emplace_back(R"({"type":"MODIFIED","object":)" + e + "}");
      }
      std::vector<double> parse_t, diff_t, plain_t, ratios;
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
        // kubetrail: the whole per-event path, from the event's text as the
        // informer parses it (ChangeDetector::parse_event: the members the
        // pruner only copies left out of the DOM) or, `plain`, parsed whole.
        size_t produced = 0;
        auto kubetrail = [&](bool plain) {
          diff::ChangeDetector detector("bench", {});
          if (openapi && !detector.learn_openapi(c.type, openapi_doc)) {
            std::fprintf(stderr, "the bench's OpenAPI document has no schema for %s\n", c.type.kind.c_str());
            std::exit(1);
          }
          model::ObjectStore store;
          simdjson::dom::parser p;
          diff::HollowParse parse;
          const double start = cpu_seconds();
          for (int i = 0; i < iterations; ++i) {
            const auto& text = frames[i % kVersions];
            if (plain)
              parse.error = p.parse(text).get(parse.doc);
            else
              detector.parse_event(c.type, p, text, parse, &store);  // as the informer: the cache at hand
            auto doc = parse.doc["object"].value();
            // Each event a new resourceVersion, as the API server would send;
            // the parsed text at hand, as the informer has its frame.
            diff::SourceText source = parse.source(p, std::string_view(text.data(), text.size()), "object");
            auto r = detector.observe(i == 0 ? model::WatchEventType::added : model::WatchEventType::modified, c.type,
                                      doc, store, "t", &source);
            produced += r.ok() && r.value().has_value();
          }
          return (cpu_seconds() - start) / iterations;
        };
        const double diff = kubetrail(false), plain = kubetrail(true);
        parse_t.push_back(parse * 1e6);
        diff_t.push_back(diff * 1e6);
        plain_t.push_back(plain * 1e6);
        ratios.push_back(diff / parse);
        if (sink == 0 && produced == SIZE_MAX) std::puts("");  // keep the loops observable
      }
      std::printf("%-36s %7zu %12.2f %12.2f %9.2fx %9.2fx %16.2f\n", c.name.c_str(), c.events[0].size(),
                  median(parse_t), median(diff_t), *std::min_element(ratios.begin(), ratios.end()), median(ratios),
                  median(plain_t));
    }
  }
  std::printf("target: ratio <= 2.0 (diffing costs no more than twice parsing)\n\n");

  // Framing: the events of a case as a watch stream, fed in 16 KiB pieces
  // as curl hands them over, against parsing each event.
  std::printf("%-36s %7s %12s %12s %10s %10s\n", "case", "bytes", "parse µs/ev", "frame µs/ev", "ratio min",
              "ratio med");
  for (const char* fixture : {"deployment", "pod", "running pod"}) {
    Case c = make_case(fixture, false);
    if (argc > 2 && c.name.find(argv[2]) == std::string::npos) continue;
    std::string stream;
    std::vector<simdjson::padded_string> events;
    for (const auto& e : c.events) {
      std::string event = R"({"type":"MODIFIED","object":)" + e + "}";
      stream += event + "\n";
      events.emplace_back(event);
    }
    const size_t escapes = static_cast<size_t>(std::count(stream.begin(), stream.end(), '\\'));
    std::vector<double> parse_t, frame_t, ratios;
    for (int run = 0; run < kRuns; ++run) {
      simdjson::dom::parser parser;
      size_t sink = 0;
      double t0 = cpu_seconds();
      for (int i = 0; i < iterations; ++i)
        sink += parser.parse(events[static_cast<size_t>(i % kVersions)]).value().type() ==
                simdjson::dom::element_type::OBJECT;
      double parse = (cpu_seconds() - t0) / iterations;
      size_t frames = 0;
      t0 = cpu_seconds();
      for (int done = 0; done < iterations; done += kVersions) {
        kube::JsonFramer framer;
        for (size_t at = 0; at < stream.size(); at += 16384)
          if (!framer.feed(std::string_view(stream).substr(at, 16384), [&](std::string_view, uint64_t) { ++frames; }))
            return 1;
      }
      double frame = (cpu_seconds() - t0) / static_cast<double>(frames);
      parse_t.push_back(parse * 1e6);
      frame_t.push_back(frame * 1e6);
      ratios.push_back(frame / parse);
      if (sink == SIZE_MAX) std::puts("");  // keep the loop observable
    }
    std::printf("%-36s %7zu %12.2f %12.2f %9.2fx %9.2fx  (%zu backslashes an event)\n", c.name.c_str(),
                events[0].size(), median(parse_t), median(frame_t), *std::min_element(ratios.begin(), ratios.end()),
                median(ratios), escapes / c.events.size());
  }
  std::printf("target: framing costs a fraction of parsing (ratio well under 1)\n");
  return 0;
}
