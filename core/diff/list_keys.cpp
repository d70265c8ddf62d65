#include "diff/list_keys.hpp"

#include <algorithm>
#include <array>

namespace kubetrail::diff {

namespace dom = simdjson::dom;

namespace {

struct BuiltinKeys {
  std::string_view field;
  std::array<std::string_view, 2> keys;
};

// From k8s.io/api (core/v1, apps/v1, admissionregistration/v1), the fields
// with a patchMergeKey. One field name, several types: `ports` is keyed by
// containerPort in Container and by port in ServiceSpec; the first key that
// every element carries wins. Lists without a merge key (tolerations,
// finalizers, ingress rules, volumeClaimTemplates, readinessGates, ...) are
// atomic in the API and diffed by index here.
constexpr std::array kBuiltin{
    BuiltinKeys{"containers", {"name"}},              // PodSpec
    BuiltinKeys{"initContainers", {"name"}},          // PodSpec
    BuiltinKeys{"ephemeralContainers", {"name"}},     // PodSpec
    BuiltinKeys{"env", {"name"}},                     // Container
    BuiltinKeys{"ports", {"containerPort", "port"}},  // Container (containerPort+protocol), ServiceSpec (port+protocol)
    BuiltinKeys{"volumes", {"name"}},                 // PodSpec
    BuiltinKeys{"volumeMounts", {"mountPath"}},       // Container
    BuiltinKeys{"volumeDevices", {"devicePath"}},     // Container
    BuiltinKeys{"resizePolicy", {"resourceName"}},    // Container (atomic, listed for readable paths)
    BuiltinKeys{"imagePullSecrets", {"name"}},        // PodSpec
    BuiltinKeys{"hostAliases", {"ip"}},               // PodSpec
    BuiltinKeys{"topologySpreadConstraints", {"topologyKey"}},  // PodSpec (topologyKey+whenUnsatisfiable)
    BuiltinKeys{"resourceClaims", {"name"}},                    // PodSpec
    BuiltinKeys{"schedulingGates", {"name"}},                   // PodSpec
    BuiltinKeys{"conditions", {"type"}},                        // Pod/Deployment/Node/... status
    BuiltinKeys{"addresses", {"type"}},                         // NodeStatus
    BuiltinKeys{"podIPs", {"ip"}},                              // PodStatus
    BuiltinKeys{"hostIPs", {"ip"}},                             // PodStatus
    BuiltinKeys{"secrets", {"name"}},                           // ServiceAccount
    BuiltinKeys{"ownerReferences", {"uid"}},                    // ObjectMeta
    BuiltinKeys{"webhooks", {"name"}},                          // Mutating/ValidatingWebhookConfiguration
};

constexpr size_t kMaxSchemaDepth = 64;  // schemas are trees; this only guards against a hostile one

}  // namespace

std::span<const std::string_view> ListKeys::builtin(std::string_view field) {
  for (const auto& b : kBuiltin)
    if (b.field == field) return {b.keys.data(), b.keys[1].empty() ? size_t(1) : size_t(2)};
  return {};
}

void append_schema_path(std::span<const model::Segment> path, std::string& out) {
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i].kind == model::Segment::Kind::key)
      model::append_segment(path[i], i == 0, out);
    else
      out.append("[*]");  // every element of a list has the list's schema
  }
}

std::string schema_path(std::span<const model::Segment> path) {
  std::string out;
  append_schema_path(path, out);
  return out;
}

std::span<const std::string_view> ListKeys::candidates(std::span<const model::Segment> path) const {
  if (!by_path_.empty()) {
    thread_local std::string text;  // looked up for every list walked: no allocation per lookup
    text.clear();
    append_schema_path(path, text);
    auto it = by_path_.find(text);
    if (it != by_path_.end()) return it->second.views;
  }
  if (path.empty() || path.back().kind != model::Segment::Kind::key) return {};
  return builtin(path.back().key);
}

void ListKeys::learn_schema(dom::element schema) {
  std::vector<model::Segment> path;
  walk(schema, path);
}

void ListKeys::learn(std::span<const model::Segment> path, std::vector<std::string> keys) {
  if (keys.empty()) return;
  auto& entry = by_path_[schema_path(path)] = Learned{std::move(keys), {}};
  entry.views.assign(entry.keys.begin(), entry.keys.end());
}

void ListKeys::walk(dom::element schema, std::vector<model::Segment>& path, Refs* refs) {
  if (path.size() > kMaxSchemaDepth || schema.type() != dom::element_type::OBJECT) return;
  if (refs) {
    if (refs->budget == 0) return;
    --refs->budget;
  }
  std::string_view ref;
  if (refs && schema["$ref"].get(ref) == simdjson::SUCCESS) {
    constexpr std::string_view kPrefix = "#/components/schemas/";
    dom::element target;
    if (!ref.starts_with(kPrefix) || std::find(refs->open.begin(), refs->open.end(), ref) != refs->open.end() ||
        refs->components[ref.substr(kPrefix.size())].get(target) != simdjson::SUCCESS)
      return;  // elsewhere, already being followed (a cycle), or missing
    std::string seen(ref);
    seen.push_back('@');
    append_schema_path(path, seen);
    if (!refs->walked.insert(std::move(seen)).second) return;  // walked here already: same keys learned
    refs->open.push_back(ref);
    walk(target, path, refs);
    refs->open.pop_back();
  }
  dom::array all_of;
  if (refs && schema["allOf"].get(all_of) == simdjson::SUCCESS)
    for (dom::element part : all_of) walk(part, path, refs);
  dom::object props;
  if (schema["properties"].get(props) == simdjson::SUCCESS) {
    for (auto [name, sub] : props) {
      path.push_back(model::Segment{model::Segment::Kind::key, name, 0, {}, {}});
      walk(sub, path, refs);
      path.pop_back();
    }
  }
  std::string_view list_type, merge_key, strategy;
  dom::array keys;
  if (schema["x-kubernetes-list-type"].get(list_type) == simdjson::SUCCESS && list_type == "map" &&
      schema["x-kubernetes-list-map-keys"].get(keys) == simdjson::SUCCESS) {
    std::vector<std::string> names;
    for (dom::element k : keys)
      if (std::string_view text; k.get(text) == simdjson::SUCCESS) names.emplace_back(text);
    learn(path, std::move(names));
  } else if (refs && schema["x-kubernetes-patch-merge-key"].get(merge_key) == simdjson::SUCCESS &&
             schema["x-kubernetes-patch-strategy"].get(strategy) == simdjson::SUCCESS &&
             strategy.find("merge") != std::string_view::npos && !merge_key.empty()) {
    learn(path, {std::string(merge_key)});
  }
  dom::element items;
  if (schema["items"].get(items) == simdjson::SUCCESS) {
    path.push_back(model::Segment{model::Segment::Kind::index, {}, 0, {}, {}});
    walk(items, path, refs);
    path.pop_back();
  }
}

bool ListKeys::learn_openapi(dom::element document, std::string_view group, std::string_view version,
                             std::string_view kind) {
  Refs refs;
  refs.budget = kWalkBudget;
  last_walk_steps_ = 0;
  if (document.at_pointer("/components/schemas").get(refs.components) != simdjson::SUCCESS) return false;
  for (auto [name, schema] : refs.components) {
    dom::array gvks;
    if (schema["x-kubernetes-group-version-kind"].get(gvks) != simdjson::SUCCESS) continue;
    for (dom::element gvk : gvks) {
      std::string_view g, v, k;
      if (gvk["group"].get(g) != simdjson::SUCCESS) g = {};
      if (gvk["version"].get(v) != simdjson::SUCCESS || gvk["kind"].get(k) != simdjson::SUCCESS) continue;
      if (g != group || v != version || k != kind) continue;
      std::vector<model::Segment> path;
      walk(schema, path, &refs);
      last_walk_steps_ = kWalkBudget - refs.budget;
      return true;
    }
  }
  return false;
}

}  // namespace kubetrail::diff
