#include "kube/discovery.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "common/go_slice.hpp"

namespace kubetrail::kube {

namespace dom = simdjson::dom;

bool ApiResource::watchable() const {
  auto has = [&](const char* v) { return std::find(verbs.begin(), verbs.end(), v) != verbs.end(); };
  return has("list") && has("watch");
}

std::string describe_failure(const Client::Response& r) {
  if (r.status == 0) return r.error.empty() ? "no response" : r.error;
  std::string text = "HTTP " + std::to_string(r.status);
  dom::parser p;
  dom::element doc;
  std::string_view message;
  if (p.parse(simdjson::padded_string(r.body)).get(doc) == simdjson::SUCCESS &&
      doc["message"].get(message) == simdjson::SUCCESS)
    text += ": " + std::string(message);
  else if (!r.body.empty())
    text += ": " + r.body.substr(0, std::min<size_t>(200, r.body.find('\n')));
  return text;
}

namespace {

// Aggregated discovery (apidiscovery.k8s.io, GA in 1.30): /api and /apis
// answer with every group's resources at once when asked for it; older
// servers ignore the parameters and answer with the legacy documents.
constexpr std::string_view kAggregatedAccept =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;q=0.9";

bool is_aggregated(const Client::Response& r) {
  return r.content_type.find("as=APIGroupDiscoveryList") != std::string::npos;
}

dom::element get_json(Client& client, dom::parser& parser, const std::string& path, std::string_view accept = {},
                      Client::Response* answer = nullptr) {
  auto r = client.get(path, 30000, accept);
  if (r.status != 200) {
    std::string hint;
    if (r.status == 401)
      hint = " (the server rejected our credentials: check the token, certificate or exec plugin of " +
             client.connection().source + ")";
    else if (r.status == 403)
      hint = " (authenticated, but not allowed: check RBAC for discovery)";
    else if (r.tls_rejected)
      hint = " (TLS: the server's certificate does not verify against the certificate-authority of " +
             client.connection().source +
             ", or lacks the server's name (or tls-server-name); or our client certificate was refused)";
    std::string why =
        "API server " + client.connection().server + ": GET " + path + " failed: " + describe_failure(r) + hint;
    if (!r.tls_rejected && (r.status == 0 || r.status == 429 || r.status >= 500)) throw Unavailable(why);
    throw Error(why);
  }
  dom::element doc;
  if (parser.parse(simdjson::padded_string(r.body)).get(doc) != simdjson::SUCCESS)
    throw Error("API server " + client.connection().server + ": GET " + path + ": the answer is not JSON");
  if (answer) answer->content_type = r.content_type;
  return doc;
}

// The elements of the slice `field` of the discovery document `doc` (a
// `kind`) got from `path` (common/go_slice.hpp). An answer that is no such
// document is an error, rather than a server that serves nothing there:
// re-discovery would stop every informer of what seemed gone, and what
// changed meanwhile would be lost.
std::vector<dom::element> array_of(Client& client, dom::element doc, const std::string& path, const char* kind,
                                   const char* field) {
  std::optional<dom::array> items;
  if (!slice_field(doc, field, items))
    throw Error("API server " + client.connection().server + ": GET " + path + ": the answer is not an " + kind +
                " (no \"" + field + "\" array)");
  std::vector<dom::element> out;
  if (items)
    for (dom::element e : *items) out.push_back(e);
  return out;
}

void add_resource(std::string_view group, std::string_view version, std::string_view name, std::string_view kind,
                  bool namespaced, std::string_view singular, dom::element r, std::vector<ApiResource>& out) {
  ApiResource a;
  a.type =
      model::ResourceType{std::string(group), std::string(version), std::string(name), std::string(kind), namespaced};
  a.singular = singular.empty() ? a.type.kind : std::string(singular);
  std::transform(a.singular.begin(), a.singular.end(), a.singular.begin(), ::tolower);
  dom::array arr;
  if (r["shortNames"].get(arr) == simdjson::SUCCESS)
    for (dom::element s : arr) a.short_names.emplace_back(std::string_view(s));
  if (r["verbs"].get(arr) == simdjson::SUCCESS)
    for (dom::element s : arr) a.verbs.emplace_back(std::string_view(s));
  out.push_back(std::move(a));
}

// An APIGroupDiscoveryList: per group, versions in order of preference.
void add_aggregated(Client& client, const std::string& path, dom::element doc, std::vector<ApiResource>& out) {
  for (dom::element item : array_of(client, doc, path, "APIGroupDiscoveryList", "items")) {
    std::string_view group;
    if (item.at_pointer("/metadata/name").get(group) != simdjson::SUCCESS) group = {};  // the core group
    dom::array versions;
    if (item["versions"].get(versions) != simdjson::SUCCESS || versions.size() == 0) continue;
    dom::element preferred = versions.at(0);
    std::string_view version;
    dom::array resources;
    if (preferred["version"].get(version) != simdjson::SUCCESS ||
        preferred["resources"].get(resources) != simdjson::SUCCESS)
      continue;
    for (dom::element r : resources) {
      std::string_view name, kind, scope, singular;
      if (r["resource"].get(name) != simdjson::SUCCESS) continue;
      // No responseKind: only subresources are served, nothing to watch.
      if (r.at_pointer("/responseKind/kind").get(kind) != simdjson::SUCCESS || kind.empty()) continue;
      if (r["scope"].get(scope) != simdjson::SUCCESS) scope = {};
      if (r["singularResource"].get(singular) != simdjson::SUCCESS) singular = {};
      add_resource(group, version, name, kind, scope == "Namespaced", singular, r, out);
    }
  }
}

void add_group_version(Client& client, const std::string& path, const std::string& group, const std::string& version,
                       std::vector<ApiResource>& out) {
  dom::parser parser;
  dom::element doc = get_json(client, parser, path);
  for (dom::element r : array_of(client, doc, path, "APIResourceList", "resources")) {
    std::string_view name, kind, singular;
    bool namespaced = false;
    if (r["name"].get(name) != simdjson::SUCCESS || name.find('/') != std::string_view::npos) continue;  // subresource
    if (r["kind"].get(kind) != simdjson::SUCCESS) continue;
    if (r["singularName"].get(singular) != simdjson::SUCCESS) singular = {};
    if (r["namespaced"].get(namespaced) != simdjson::SUCCESS) namespaced = false;
    add_resource(group, version, name, kind, namespaced, singular, r, out);
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool names(const ApiResource& r, const std::string& n) {
  return n == r.type.resource || n == r.singular || n == lower(r.type.kind) ||
         std::find(r.short_names.begin(), r.short_names.end(), n) != r.short_names.end();
}

}  // namespace

Discovery Discovery::fetch(Client& client) {
  Discovery d;
  {
    dom::parser parser;
    Client::Response answer;
    dom::element api = get_json(client, parser, "/api", kAggregatedAccept, &answer);
    if (is_aggregated(answer)) {
      add_aggregated(client, "/api", api, d.resources_);
    } else {
      for (dom::element v : array_of(client, api, "/api", "APIVersions", "versions"))
        if (v.is_string() && std::string_view(v) == "v1") add_group_version(client, "/api/v1", "", "v1", d.resources_);
    }
  }
  dom::parser parser;
  Client::Response answer;
  dom::element apis = get_json(client, parser, "/apis", kAggregatedAccept, &answer);
  if (is_aggregated(answer)) {
    add_aggregated(client, "/apis", apis, d.resources_);
    return d;
  }
  for (dom::element g : array_of(client, apis, "/apis", "APIGroupList", "groups")) {
    std::string_view name, gv, version;
    if (g["name"].get(name) != simdjson::SUCCESS ||
        g.at_pointer("/preferredVersion/groupVersion").get(gv) != simdjson::SUCCESS ||
        g.at_pointer("/preferredVersion/version").get(version) != simdjson::SUCCESS)
      continue;
    add_group_version(client, "/apis/" + std::string(gv), std::string(name), std::string(version), d.resources_);
  }
  return d;
}

Result<model::ResourceType> Discovery::resolve(std::string_view raw) const {
  std::string name = lower(raw);
  const ApiResource* found = nullptr;
  for (const auto& r : resources_) {  // "plural.group" (or kind.group, short.group)
    if (r.type.group.empty() || name.size() <= r.type.group.size() + 1 || !name.ends_with("." + r.type.group)) continue;
    if (names(r, name.substr(0, name.size() - r.type.group.size() - 1))) {
      found = &r;
      break;
    }
  }
  if (!found)
    for (const auto& r : resources_)  // core first, then groups in the server's order, like kubectl
      if (names(r, name)) {
        found = &r;
        break;
      }
  if (found) {
    if (!found->watchable())
      return Result<model::ResourceType>::failure("resource \"" + std::string(raw) + "\" (" +
                                                  found->type.qualified_name() + ") does not support list and watch");
    return found->type;
  }
  std::vector<std::pair<size_t, std::string>> close;
  for (const auto& r : resources_) {
    size_t d = std::min(edit_distance(name, r.type.resource), edit_distance(name, r.type.qualified_name()));
    if (d <= 3 || r.type.resource.find(name) != std::string::npos)
      close.emplace_back(
          d, r.type.qualified_name() + " (" + (r.type.group.empty() ? "" : r.type.group + "/") + r.type.version + ")");
  }
  std::sort(close.begin(), close.end());
  std::string msg = "the server has no resource \"" + std::string(raw) + "\"";
  if (!close.empty()) {
    msg += "; close matches:";
    for (size_t i = 0; i < close.size() && i < 5; ++i) msg += (i ? ", " : " ") + close[i].second;
  }
  return Result<model::ResourceType>::failure(msg);
}

std::shared_ptr<const std::string> OpenApiDocuments::for_type(const model::ResourceType& type) {
  std::string gv = type.group.empty() ? "api/" + type.version : "apis/" + type.group + "/" + type.version;
  auto& doc_text = by_group_version_[gv];
  if (doc_text) return doc_text;
  doc_text = std::make_shared<const std::string>();  // "": none, also remembered
  if (!index_) index_ = client_.get("/openapi/v3", 30000);
  dom::parser parser;
  dom::element doc;
  std::string_view url;
  if (index_->status != 200 || parser.parse(simdjson::padded_string(index_->body)).get(doc) != simdjson::SUCCESS ||
      doc["paths"][gv]["serverRelativeURL"].get(url) != simdjson::SUCCESS) {
    spdlog::info("{}: no OpenAPI v3 document ({}): built-in list keys only", gv,
                 index_->status == 200 ? "not in /openapi/v3" : describe_failure(*index_));
    return doc_text;
  }
  auto r = client_.get(url, 60000);
  if (r.status != 200) {
    spdlog::info("{}: GET {} failed ({}): built-in list keys only", gv, url, describe_failure(r));
    return doc_text;
  }
  doc_text = std::make_shared<const std::string>(std::move(r.body));
  return doc_text;
}

}  // namespace kubetrail::kube
