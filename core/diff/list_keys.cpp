#include "diff/list_keys.hpp"

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

std::string schema_path(std::span<const Segment> path) {
  std::string out;
  std::vector<Segment> generic(path.begin(), path.end());
  for (auto& s : generic)
    if (s.kind != Segment::Kind::key) s = Segment{Segment::Kind::keyed, {}, 0, "*", "*"};
  append_path(generic, out);
  // Keyed "[*=*]" stands for "any element": write it the way patterns do.
  for (size_t at; (at = out.find("[*=*]")) != std::string::npos;) out.replace(at, 5, "[*]");
  return out;
}

std::span<const std::string_view> ListKeys::candidates(std::span<const Segment> path) const {
  if (!by_path_.empty()) {
    auto it = by_path_.find(schema_path(path));
    if (it != by_path_.end()) return it->second.views;
  }
  if (path.empty() || path.back().kind != Segment::Kind::key) return {};
  return builtin(path.back().key);
}

void ListKeys::learn_schema(dom::element schema) {
  std::vector<Segment> path;
  walk(schema, path);
}

void ListKeys::walk(dom::element schema, std::vector<Segment>& path) {
  if (path.size() > kMaxSchemaDepth || schema.type() != dom::element_type::OBJECT) return;
  dom::object props;
  if (schema["properties"].get(props) == simdjson::SUCCESS) {
    for (auto [name, sub] : props) {
      path.push_back(Segment{Segment::Kind::key, name, 0, {}, {}});
      walk(sub, path);
      path.pop_back();
    }
  }
  std::string_view list_type;
  dom::array keys;
  if (schema["x-kubernetes-list-type"].get(list_type) == simdjson::SUCCESS && list_type == "map" &&
      schema["x-kubernetes-list-map-keys"].get(keys) == simdjson::SUCCESS && keys.size() > 0) {
    Learned learned;
    for (dom::element k : keys) {
      std::string_view text;
      if (k.get(text) == simdjson::SUCCESS) learned.keys.emplace_back(text);
    }
    auto& entry = by_path_[schema_path(path)] = std::move(learned);
    entry.views.assign(entry.keys.begin(), entry.keys.end());
  }
  dom::element items;
  if (schema["items"].get(items) == simdjson::SUCCESS) {
    path.push_back(Segment{Segment::Kind::index, {}, 0, {}, {}});
    walk(items, path);
    path.pop_back();
  }
}

}  // namespace kubetrail::diff
