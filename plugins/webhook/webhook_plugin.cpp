// webhook: POSTs change sets to an HTTP endpoint, as plain JSON or CloudEvents
// 1.0 (structured or binary mode), one per request or as JSON arrays, with
// optional basic/bearer auth and an HMAC-SHA256 signature of the body.
//
// Status mapping: 2xx OK; 408, 429, 5xx and connection errors RETRY (with the
// server's Retry-After); any other status FAIL with the body's first line.
// The URL and credentials never appear in messages: URLs carry tokens.
#include <openssl/hmac.h>
#include <kubetrail/sdk.hpp>

#include <cctype>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/plugin_support.hpp"

namespace {

namespace sdk = kubetrail::sdk;
namespace kp = kubetrail_plugins;
using nlohmann::ordered_json;

constexpr const char* kSchema = R"schema({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "webhook handler",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "url": {"type": "string", "pattern": "^https?://", "description": "endpoint (use url_env when the URL holds a token)"},
    "url_env": {"type": "string", "minLength": 1, "description": "environment variable holding the endpoint URL"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "extra request headers"},
    "format": {"enum": ["json", "cloudevents", "cloudevents-binary"], "default": "json",
               "description": "json: the change set; cloudevents: structured mode; cloudevents-binary: ce-* headers"},
    "batch_max": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1,
                  "description": "change sets per request; > 1 sends a JSON array (not with cloudevents-binary)"},
    "basic_user_env": {"type": "string", "minLength": 1},
    "basic_password_env": {"type": "string", "minLength": 1},
    "bearer_token_env": {"type": "string", "minLength": 1},
    "bearer_token_file": {"type": "string", "minLength": 1},
    "hmac_secret_env": {"type": "string", "minLength": 1,
                        "description": "sign the body: X-Kubetrail-Signature: t=<unix>,v1=<hex HMAC-SHA256 of t.body>"},
    "hmac_secret_file": {"type": "string", "minLength": 1},
    "ca_file": {"type": "string", "minLength": 1, "description": "CA bundle to verify the server with"},
    "insecure_skip_verify": {"type": "boolean", "default": false},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 600000, "default": 10000},
    "prune_paths": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "description": "dotted paths removed from each change set, e.g. old, new, changes[*].old"},
    "metadata": {"type": "object", "description": "added to each payload under \"metadata\""}
  }
})schema";

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char d[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(d[p[i] >> 4]);
    out.push_back(d[p[i] & 0xf]);
  }
  return out;
}

// Removes a dotted path ("a.b", "changes[*].old") from a JSON value.
void prune(ordered_json& j, const std::vector<std::string>& segs, size_t i) {
  if (i >= segs.size()) return;
  const std::string& s = segs[i];
  if (s == "[*]") {
    if (j.is_array())
      for (auto& e : j) prune(e, segs, i + 1);
    return;
  }
  if (!j.is_object() || !j.contains(s)) return;
  if (i + 1 == segs.size())
    j.erase(s);
  else
    prune(j[s], segs, i + 1);
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> segs;
  std::string cur;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '.') {
      if (!cur.empty()) segs.push_back(cur);
      cur.clear();
    } else if (path.compare(i, 3, "[*]") == 0) {
      if (!cur.empty()) segs.push_back(cur);
      cur.clear();
      segs.push_back("[*]");
      i += 2;
    } else {
      cur.push_back(path[i]);
    }
  }
  if (!cur.empty()) segs.push_back(cur);
  return segs;
}

class Webhook : public sdk::Plugin {
 public:
  Webhook(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = nlohmann::json::parse(config_json);
    if (cfg.contains("url") == cfg.contains("url_env")) throw std::runtime_error("set exactly one of url and url_env");
    url_ = cfg.contains("url") ? cfg["url"].get<std::string>() : kp::read_secret(cfg, "url");
    if (url_.rfind("http://", 0) != 0 && url_.rfind("https://", 0) != 0)
      throw std::runtime_error("url_env: the URL must start with http:// or https://");
    format_ = cfg.value("format", "json");
    batch_max_ = cfg.value("batch_max", 1);
    if (format_ == "cloudevents-binary" && batch_max_ > 1)
      throw std::runtime_error("batch_max > 1 needs format json or cloudevents: binary mode carries one event");
    const auto headers = cfg.value("headers", nlohmann::json::object());  // named: items() must not outlive it
    for (auto& [k, v] : headers.items()) headers_.push_back(k + ": " + v.get<std::string>());
    if (cfg.contains("basic_user_env") != cfg.contains("basic_password_env"))
      throw std::runtime_error("basic auth needs both basic_user_env and basic_password_env");
    if (cfg.contains("basic_user_env")) {
      basic_user_ = kp::read_secret(cfg, "basic_user");
      basic_password_ = kp::read_secret(cfg, "basic_password");
    }
    if (cfg.contains("bearer_token_env") && cfg.contains("bearer_token_file"))
      throw std::runtime_error("set one of bearer_token_env and bearer_token_file");
    if (std::string token = kp::read_secret(cfg, "bearer_token"); !token.empty())
      headers_.push_back("Authorization: Bearer " + token);
    if (!basic_user_.empty() && cfg.contains("bearer_token_env") + cfg.contains("bearer_token_file"))
      throw std::runtime_error("use basic or bearer auth, not both");
    if (cfg.contains("hmac_secret_env") && cfg.contains("hmac_secret_file"))
      throw std::runtime_error("set one of hmac_secret_env and hmac_secret_file");
    hmac_secret_ = kp::read_secret(cfg, "hmac_secret");
    ca_file_ = cfg.value("ca_file", "");
    insecure_ = cfg.value("insecure_skip_verify", false);
    timeout_ms_ = cfg.value("timeout_ms", 10000);
    for (const auto& p : cfg.value("prune_paths", std::vector<std::string>{})) prune_paths_.push_back(split_path(p));
    if (cfg.contains("metadata")) metadata_ = ordered_json(cfg["metadata"]);
    requests_ = host.define_metric(sdk::MetricKind::counter, "webhook_requests_total", "HTTP requests sent");
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    sdk::Result result;
    result.item_status.assign(batch.size(), sdk::Status::ok);
    for (size_t start = 0; start < batch.size(); start += batch_max_) {
      size_t end = std::min(batch.size(), start + static_cast<size_t>(batch_max_));
      auto r = post(batch, start, end);
      if (r.status == sdk::Status::ok) continue;
      // This request failed: it and everything after it take its status;
      // the requests before it were delivered (partial success).
      for (size_t i = start; i < batch.size(); ++i) result.item_status[i] = r.status;
      result.status = r.status;
      result.retry_after_ms = r.retry_after_ms;
      result.message = r.message;
      break;
    }
    return result;
  }

 private:
  ordered_json payload_of(const sdk::ChangeSet& cs) const {
    auto j = ordered_json::parse(cs.json());
    for (const auto& p : prune_paths_) prune(j, p, 0);
    if (!metadata_.is_null()) j["metadata"] = metadata_;
    if (format_ != "cloudevents") return j;
    ordered_json ce;
    ce["specversion"] = "1.0";
    ce["type"] = event_type(cs);
    ce["source"] = source_of(cs.cluster());
    ce["id"] = std::string(cs.id());
    ce["subject"] = subject(cs);
    ce["time"] = std::string(cs.observed_at());
    ce["datacontenttype"] = "application/json";
    ce["data"] = std::move(j);
    return ce;
  }

  static std::string event_type(const sdk::ChangeSet& cs) {
    std::string t(cs.type_name());
    for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "dev.kubetrail.change." + t;
  }
  // CloudEvents `source` must be a URI-reference (RFC 3986): the cluster
  // name, percent-encoded where it is not a plain path segment ("prod eu-1"
  // made every event invalid for a CloudEvents SDK).
  static std::string source_of(std::string_view cluster) {
    if (cluster.empty()) return "kubetrail";
    return percent_encode(cluster,
                          [](unsigned char c) { return std::isalnum(c) || std::strchr("-._~!$&'()*+,;=@", c); });
  }
  // RESOURCE[.GROUP]/NAMESPACE/NAME: a Deployment and a ConfigMap of one
  // name are different subjects.
  static std::string subject(const sdk::ChangeSet& cs) {
    std::string out(cs.resource());
    if (!cs.group().empty()) out.append(".").append(cs.group());
    out.push_back('/');
    if (!cs.object_namespace().empty()) out.append(cs.object_namespace()).push_back('/');
    out.append(cs.name());
    return out;
  }
  // The HTTP binding: ce-* header values percent-encode what is outside
  // printable ASCII, space, '"' and '%' (and so can never break a header line).
  static std::string header_value(std::string_view v) {
    return percent_encode(v, [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '%'; });
  }
  // Every byte `keep` refuses as %XX.
  template <class Keep>
  static std::string percent_encode(std::string_view v, Keep keep) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : v) {
      if (keep(c)) {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back('%');
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0xf]);
      }
    }
    return out;
  }

  sdk::Result post(const sdk::Batch& batch, size_t start, size_t end) {
    kp::HttpRequest req;
    req.url = url_;
    req.timeout_ms = timeout_ms_;
    req.ca_file = ca_file_;
    req.insecure_skip_verify = insecure_;
    req.basic_user = basic_user_;
    req.basic_password = basic_password_;
    req.headers = headers_;
    if (batch_max_ == 1) {
      req.body = payload_of(batch[start]).dump();
    } else {
      ordered_json arr = ordered_json::array();
      for (size_t i = start; i < end; ++i) arr.push_back(payload_of(batch[i]));
      req.body = arr.dump();
    }
    if (format_ == "cloudevents") {
      req.headers.push_back(batch_max_ == 1 ? "Content-Type: application/cloudevents+json"
                                            : "Content-Type: application/cloudevents-batch+json");
    } else {
      req.headers.push_back("Content-Type: application/json");
    }
    if (format_ == "cloudevents-binary") {
      const auto cs = batch[start];
      req.headers.push_back("ce-specversion: 1.0");
      req.headers.push_back("ce-type: " + event_type(cs));
      req.headers.push_back("ce-source: " + header_value(source_of(cs.cluster())));
      req.headers.push_back("ce-id: " + header_value(cs.id()));
      req.headers.push_back("ce-subject: " + header_value(subject(cs)));
      req.headers.push_back("ce-time: " + header_value(cs.observed_at()));
    }
    if (!hmac_secret_.empty()) {
      std::string t = std::to_string(std::time(nullptr));
      std::string signed_text = t + "." + req.body;
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      HMAC(EVP_sha256(), hmac_secret_.data(), static_cast<int>(hmac_secret_.size()),
           reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &len);
      req.headers.push_back("X-Kubetrail-Signature: t=" + t + ",v1=" + hex(mac, len));
    }
    auto resp = kp::http_post(req);
    host().record(requests_, 1);
    switch (kp::verdict(resp)) {
      case kp::HttpVerdict::ok: return sdk::Result::ok();
      case kp::HttpVerdict::retry: return sdk::Result::retry(kp::describe(resp), kp::retry_after_ms(resp));
      default: return sdk::Result::fail(kp::describe(resp));
    }
  }

  std::string url_, format_, basic_user_, basic_password_, hmac_secret_, ca_file_;
  int batch_max_ = 1;
  bool insecure_ = false;
  long timeout_ms_ = 10000;
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> prune_paths_;
  ordered_json metadata_;
  int32_t requests_ = -1;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(Webhook, "webhook", "0.1.0", "POSTs change sets as JSON or CloudEvents to an HTTP endpoint",
                    kSchema, KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
