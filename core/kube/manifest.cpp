#include "kube/manifest.hpp"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/json_depth.hpp"
#include "kube/yaml_problem.hpp"

namespace kubetrail::kube {

namespace {

// What turning a YAML document into JSON may cost: aliases let a few
// hundred bytes name billions of nodes (a "billion laughs" document), so the
// conversion counts what it builds. Real manifests are far below both.
constexpr size_t kMaxNodes = 1000000;
constexpr size_t kMaxDepth = 512;

constexpr size_t kMaxScalarBytes = size_t{64} << 20;  // an alias names a scalar many times: count every copy

struct Converting {
  const std::string& file;
  size_t nodes = 0;
  size_t bytes = 0;
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
nlohmann::json scalar(const YAML::Node& n, Converting& c) {
  const std::string& s = n.Scalar();
  if ((c.bytes += s.size()) > kMaxScalarBytes)  // found by fuzz_manifest: aliases of a long scalar ran out of memory
    refuse(c, n,
           "the document expands to more than " + std::to_string(kMaxScalarBytes >> 20) + " MiB of text (aliases?)");
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
  if (depth > kMaxDepth) refuse(c, n, nested_deeper_than(kMaxDepth));
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

// The documents of a YAML stream, split at the document markers ("---" or
// "..." at the start of a line, as YAML 1.2 reads them even inside quoted
// scalars), each with the line it starts at. Not YAML::LoadAll: yaml-cpp 0.7
// loops forever on some malformed streams (found by fuzz/fuzz_manifest: the
// 13 bytes in tests/fuzz-regressions/manifest/loadall-loop), growing its
// vector of documents until memory runs out. Directives ("%YAML") stay with
// the document they announce.
constexpr size_t kMaxDocuments = 100000;

std::vector<std::pair<size_t, std::string>> yaml_documents(const std::string& text) {
  std::vector<std::pair<size_t, std::string>> docs;
  std::string current, directives;
  size_t line = 0, start = 0;
  auto marker = [](std::string_view l, std::string_view m) {
    return l.starts_with(m) && (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
  };
  auto flush = [&](size_t next_start) {
    if (current.find_first_not_of(" \t\r\n") != std::string::npos) {
      if (docs.size() == kMaxDocuments)
        throw Error("more than " + std::to_string(kMaxDocuments) + " YAML documents in one file");
      docs.emplace_back(start, directives + current);
      directives.clear();
    }
    current.clear();
    start = next_start;
  };
  for (size_t pos = 0; pos <= text.size(); ++line) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + pos, end - pos);
    if (marker(l, "---")) {
      flush(line);
      current.append(l.substr(3)).push_back('\n');  // "--- {a: 1}": content on the marker line
    } else if (marker(l, "...")) {
      flush(line + 1);
    } else if (l.starts_with("%") && current.find_first_not_of(" \t\r\n") == std::string::npos) {
      directives.append(l).push_back('\n');
      start = line + 1;
    } else {
      current.append(l).push_back('\n');
    }
    pos = end + 1;
  }
  flush(line);
  return docs;
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
      if (size_t at = json_depth_exceeded_at(text); at != std::string::npos)
        throw Error(path.string() + ": invalid JSON at byte offset " + std::to_string(at) + ": " +
                    nested_deeper_than());
      auto doc = nlohmann::json::parse(text);
      if (doc.is_array())
        for (auto& e : doc) add_object(std::move(e), path.string(), out);
      else
        add_object(std::move(doc), path.string(), out);
      return out;
    } catch (const nlohmann::json::parse_error& e) {
      json_error = path.string() + ": invalid JSON at byte offset " + std::to_string(e.byte) + ": " + e.what();
    } catch (const nlohmann::json::exception& e) {
      // out_of_range for a number JSON can write and a double cannot hold
      // (1e400; found by fuzz_manifest): an error naming the file, not an escape.
      json_error = path.string() + ": invalid JSON: " + e.what();
    }
  }
  const std::string file = path.string();
  for (const auto& [first_line, document] : yaml_documents(text)) {
    try {
      Converting c{file};
      add_object(to_json(YAML::Load(document), c), file, out);
    } catch (const YAML::Exception& e) {
      if (!json_error.empty()) throw Error(json_error);
      throw Error(file + ":" + std::to_string(first_line + e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                  ": invalid YAML: " + yaml_problem(e));
    }
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
