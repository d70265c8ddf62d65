#include "kube/manifest.hpp"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace kubetrail::kube {

namespace {

// What turning a YAML document into JSON may cost: aliases let a few
// hundred bytes name billions of nodes (a "billion laughs" document), so the
// conversion counts what it builds. Real manifests are far below both.
constexpr size_t kMaxNodes = 1000000;
constexpr size_t kMaxDepth = 512;

struct Converting {
  const std::string& file;
  size_t nodes = 0;
};

[[noreturn]] void refuse(const Converting& c, const YAML::Node& n, const std::string& why) {
  const YAML::Mark m = n.Mark();
  throw Error(c.file + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " + why);
}

// [-+]?[0-9]+
bool is_integer(std::string_view s) {
  size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (YAML 1.2 core schema floats)
bool is_real(std::string_view s) {
  size_t i = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  auto digits = [&] {
    size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - from;
  };
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// YAML 1.2 core schema for plain (unquoted) scalars, as Kubernetes' YAML
// decoder (sigs.k8s.io/yaml) resolves them. Hand-written scanners, not
// std::regex: its recursive matcher overflowed the stack on a 300,000
// character scalar.
nlohmann::json scalar(const YAML::Node& n, const Converting& c) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") return s;  // quoted: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (is_integer(s)) {
    int64_t v = 0;
    const char* b = s.data() + (s[0] == '+' ? 1 : 0);
    auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size()) return v;
  }
  if (is_real(s)) {
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    // Kubernetes' decoder refuses what JSON cannot hold (+Inf); an underflow is 0.
    if (errno == ERANGE && std::isinf(v)) refuse(c, n, "number " + s.substr(0, 40) + " is out of range");
    return v;
  }
  return s;
}

nlohmann::json to_json(const YAML::Node& n, Converting& c, size_t depth = 0) {
  if (++c.nodes > kMaxNodes)
    refuse(c, n, "the document expands to more than " + std::to_string(kMaxNodes) + " nodes (aliases?)");
  if (depth > kMaxDepth) refuse(c, n, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
  switch (n.Type()) {
    case YAML::NodeType::Null: return nullptr;
    case YAML::NodeType::Scalar: return scalar(n, c);
    case YAML::NodeType::Sequence: {
      auto a = nlohmann::json::array();
      for (const auto& e : n) a.push_back(to_json(e, c, depth + 1));
      return a;
    }
    case YAML::NodeType::Map: {
      auto o = nlohmann::json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) refuse(c, kv.first, "a mapping key must be a scalar");
        o[kv.first.Scalar()] = to_json(kv.second, c, depth + 1);
      }
      return o;
    }
    default: return nullptr;
  }
}

void add_object(nlohmann::json doc, const std::string& file, std::vector<nlohmann::json>& out) {
  if (doc.is_null()) return;  // empty YAML document ("---" at the end)
  if (!doc.is_object()) throw Error(file + ": a manifest must be an object, got " + std::string(doc.type_name()));
  auto kind = doc.find("kind");
  if (doc.contains("items") && kind != doc.end() && kind->is_string() && kind->get<std::string>().ends_with("List")) {
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
    const std::string file = path.string();
    for (const auto& doc : YAML::LoadAll(text)) {
      Converting c{file};
      add_object(to_json(doc, c), file, out);
    }
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
