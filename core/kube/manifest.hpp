// Kubernetes manifests from files: YAML (multi-document) or JSON, a single
// object or a List, turned into JSON objects for `kubetrail diff`.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace kubetrail::kube {

// Throws kubetrail::Error naming the file and line (YAML) or byte (JSON).
std::vector<nlohmann::json> load_manifests(const std::filesystem::path& path);

// apiVersion/kind/namespace/name: how two manifests are paired.
std::string manifest_identity(const nlohmann::json& object);

}  // namespace kubetrail::kube
