#include "kube/manifest.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.hpp"

namespace kubetrail::kube {

namespace {

// YAML 1.2 core schema for plain (unquoted) scalars, as Kubernetes' YAML
// decoder (sigs.k8s.io/yaml) resolves them.
nlohmann::json scalar(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") return s;  // quoted: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  static const std::regex integer(R"([-+]?[0-9]+)");
  static const std::regex real(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(s, integer)) {
    int64_t v = 0;
    const char* b = s.data() + (s[0] == '+' ? 1 : 0);
    auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size()) return v;
  }
  if (std::regex_match(s, real)) return std::stod(s);
  return s;
}

nlohmann::json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return nullptr;
    case YAML::NodeType::Scalar: return scalar(n);
    case YAML::NodeType::Sequence: {
      auto a = nlohmann::json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      auto o = nlohmann::json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    default: return nullptr;
  }
}

void add_object(nlohmann::json doc, const std::string& file, std::vector<nlohmann::json>& out) {
  if (doc.is_null()) return;  // empty YAML document ("---" at the end)
  if (!doc.is_object()) throw Error(file + ": a manifest must be an object, got " + std::string(doc.type_name()));
  if (doc.contains("items") && doc.value("kind", "").ends_with("List")) {
    for (auto& item : doc["items"]) add_object(std::move(item), file, out);
    return;
  }
  out.push_back(std::move(doc));
}

}  // namespace

std::vector<nlohmann::json> load_manifests(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  std::vector<nlohmann::json> out;
  // JSON first when it looks like JSON (exact byte offsets in errors); YAML,
  // a superset, for everything else - including JSON documents between
  // "---" lines.
  size_t first = text.find_first_not_of(" \t\r\n");
  std::string json_error;
  if (first != std::string::npos && (text[first] == '{' || text[first] == '[')) {
    try {
      auto doc = nlohmann::json::parse(text);
      if (doc.is_array())
        for (auto& e : doc) add_object(std::move(e), path.string(), out);
      else
        add_object(std::move(doc), path.string(), out);
      return out;
    } catch (const nlohmann::json::parse_error& e) {
      json_error = path.string() + ": invalid JSON at byte offset " + std::to_string(e.byte) + ": " + e.what();
    }
  }
  try {
    for (const auto& doc : YAML::LoadAll(text)) add_object(to_json(doc), path.string(), out);
  } catch (const YAML::Exception& e) {
    if (!json_error.empty()) throw Error(json_error);
    throw Error(path.string() + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                ": invalid YAML: " + e.msg);
  }
  return out;
}

std::string manifest_identity(const nlohmann::json& o) {
  auto str = [](const nlohmann::json& j, const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& md = o.contains("metadata") && o["metadata"].is_object() ? o["metadata"] : empty;
  return str(o, "apiVersion") + "/" + str(o, "kind") + "/" + str(md, "namespace") + "/" + str(md, "name");
}

}  // namespace kubetrail::kube
