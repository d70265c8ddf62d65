// Helpers shared by the bundled plugins (not part of the SDK): reading
// secrets from *_env / *_file config keys, and one HTTP POST over libcurl
// with the status mapping every HTTP-based handler needs.
//
// Header-only so that each plugin stays one self-contained .so.
#pragma once

#include <curl/curl.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace kubetrail_plugins {

// The value of a secret named by `<base>_env` (an environment variable) or
// `<base>_file` (a file; trailing newlines dropped). "" when neither key is
// set. Throws with a message naming the key, never the value.
inline std::string read_secret(const nlohmann::json& cfg, const std::string& base) {
  if (auto it = cfg.find(base + "_env"); it != cfg.end()) {
    std::string var = it->get<std::string>();
    const char* v = std::getenv(var.c_str());
    if (!v || !*v) throw std::runtime_error(base + "_env: environment variable " + var + " is not set or empty");
    return v;
  }
  if (auto it = cfg.find(base + "_file"); it != cfg.end()) {
    std::string path = it->get<std::string>();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(base + "_file: cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string v = ss.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    if (v.empty()) throw std::runtime_error(base + "_file: " + path + " is empty");
    return v;
  }
  return {};
}

inline void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
  long timeout_ms = 10000;
  std::string ca_file;
  bool insecure_skip_verify = false;
  std::string basic_user, basic_password;
};

struct HttpResponse {
  long status = 0;  // 0 when no response (connection error, timeout)
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string transport_error;                 // curl's message, never with the URL
};

namespace detail {
inline size_t on_body(char* p, size_t size, size_t n, void* ud) {
  auto* out = static_cast<std::string*>(ud);
  size_t len = size * n;
  if (out->size() < 64 * 1024) out->append(p, std::min(len, 64 * 1024 - out->size()));  // bounded
  return len;
}
inline size_t on_header(char* p, size_t size, size_t n, void* ud) {
  auto* h = static_cast<std::map<std::string, std::string>*>(ud);
  std::string line(p, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    (*h)[name] = value;
  }
  return size * n;
}
}  // namespace detail

inline HttpResponse http_post(const HttpRequest& req) {
  init_curl_once();
  HttpResponse resp;
  CURL* curl = curl_easy_init();
  if (!curl) {
    resp.transport_error = "curl_easy_init failed";
    return resp;
  }
  curl_slist* headers = nullptr;
  for (const auto& h : req.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min(req.timeout_ms, 10000L));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "kubetrail");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &detail::on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &detail::on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp.headers);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!req.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, req.ca_file.c_str());
  if (req.insecure_skip_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!req.basic_user.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, req.basic_user.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, req.basic_password.c_str());
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK)
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  else
    resp.transport_error = curl_easy_strerror(rc);  // a fixed text: no URL, no secret
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return resp;
}

// Retry-After in milliseconds: delta-seconds or an HTTP-date; 0 when absent.
inline uint32_t retry_after_ms(const HttpResponse& r) {
  auto it = r.headers.find("retry-after");
  if (it == r.headers.end() || it->second.empty()) return 0;
  const std::string& v = it->second;
  if (std::isdigit(static_cast<unsigned char>(v[0]))) {
    long s = std::strtol(v.c_str(), nullptr, 10);
    return static_cast<uint32_t>(std::min(s, 3600L) * 1000);
  }
  std::tm tm{};
  if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
    time_t when = timegm(&tm), now = std::time(nullptr);
    return when > now ? static_cast<uint32_t>(std::min<time_t>(when - now, 3600) * 1000) : 0;
  }
  return 0;
}

// The first line of a response body, bounded: for error messages.
inline std::string first_line(const std::string& body) {
  std::string line = body.substr(0, body.find('\n'));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

// How an HTTP outcome maps to a handler status: 2xx ok; 408, 429, 5xx and
// no response: retry; any other status: fail.
enum class HttpVerdict { ok, retry, fail };
inline HttpVerdict verdict(const HttpResponse& r) {
  if (r.status >= 200 && r.status < 300) return HttpVerdict::ok;
  if (r.status == 0 || r.status == 408 || r.status == 429 || r.status >= 500) return HttpVerdict::retry;
  return HttpVerdict::fail;
}

// "HTTP 500: first line of body" or the transport error.
inline std::string describe(const HttpResponse& r) {
  if (r.status == 0) return r.transport_error.empty() ? "no response" : r.transport_error;
  std::string line = first_line(r.body);
  return "HTTP " + std::to_string(r.status) + (line.empty() ? "" : ": " + line);
}

}  // namespace kubetrail_plugins
