#include "cli/api_client.hpp"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <exception>
#include <memory>

#include "common/error.hpp"
#include "config/config.hpp"

namespace kubetrail::cli {

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct ListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// What the server said went wrong: its {"error": ...}, else the body.
std::string error_of(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  return body.substr(0, 200);
}

}  // namespace

ApiClient::ApiClient(std::string base, std::string token) : base_(std::move(base)), token_(std::move(token)) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
  if (base_.rfind("http://", 0) != 0 && base_.rfind("https://", 0) != 0)
    throw Error("--server \"" + base_ + "\": expected http://HOST:PORT (kubectl port-forward's address, say)");
}

std::string ApiClient::escape(const std::string& value) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  char* e = curl_easy_escape(curl.get(), value.data(), static_cast<int>(value.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

std::string ApiClient::get(const std::string& path_and_query) const { return request("GET", path_and_query); }
std::string ApiClient::post(const std::string& path_and_query) const { return request("POST", path_and_query); }

std::string ApiClient::request(const char* method, const std::string& path_and_query) const {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw Error("libcurl: cannot start a request");
  const std::string url = base_ + path_and_query;
  std::unique_ptr<curl_slist, ListDeleter> headers;
  if (!token_.empty()) headers.reset(curl_slist_append(nullptr, ("Authorization: Bearer " + token_).c_str()));
  std::string body;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method);
  if (std::string_view(method) == "POST") curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "");
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl.get());
  if (rc != CURLE_OK) throw Error(std::string(method) + " " + url + ": " + curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status / 100 != 2)
    throw Error(std::string(method) + " " + url + ": HTTP " + std::to_string(status) + ": " + error_of(body));
  return body;
}

void ApiClient::stream(const std::string& path_and_query,
                       const std::function<void(const std::string&, const std::string&)>& on_event,
                       const std::atomic<bool>& stop) const {
  struct Reader {
    const std::function<void(const std::string&, const std::string&)>* on_event;
    const std::atomic<bool>* stop;
    std::string buffer, id, data;
    // What on_event threw: it must not unwind through libcurl (C), so the
    // transfer is ended and it is thrown again after.
    std::exception_ptr failed;
  } reader{&on_event, &stop, {}, {}, {}, nullptr};
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw Error("libcurl: cannot start a request");
  const std::string url = base_ + path_and_query;
  std::unique_ptr<curl_slist, ListDeleter> headers(curl_slist_append(nullptr, "Accept: text/event-stream"));
  if (!token_.empty()) headers.reset(curl_slist_append(headers.release(), ("Authorization: Bearer " + token_).c_str()));
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  // Lines as they come: "id: X", "data: Y", a blank line ends an event.
  auto on_bytes = +[](char* bytes, size_t size, size_t n, void* self) -> size_t {
    auto& r = *static_cast<Reader*>(self);
    if (r.stop->load()) return 0;  // ends the transfer
    r.buffer.append(bytes, size * n);
    size_t start = 0, end;
    while ((end = r.buffer.find('\n', start)) != std::string::npos) {
      std::string line = r.buffer.substr(start, end - start);
      start = end + 1;
      if (line.rfind("id: ", 0) == 0) {
        r.id = line.substr(4);
      } else if (line.rfind("data: ", 0) == 0) {
        r.data += line.substr(6);
      } else if (line.empty() && !r.data.empty()) {
        try {
          (*r.on_event)(r.id, r.data);
        } catch (...) {
          r.failed = std::current_exception();
          return 0;  // ends the transfer
        }
        r.data.clear();
      }
    }
    r.buffer.erase(0, start);
    return size * n;
  };
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_bytes);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &reader);
  // The stop flag is also looked at while no bytes come (keep-alives come
  // every 15 s): libcurl's progress callback runs about once a second.
  auto on_progress = +[](void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
    return static_cast<Reader*>(self)->stop->load() ? 1 : 0;
  };
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &reader);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  CURLcode rc = curl_easy_perform(curl.get());
  if (reader.failed) std::rethrow_exception(reader.failed);
  if (stop.load()) return;
  if (rc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    throw Error("GET " + url + ": HTTP " + std::to_string(status));
  }
  throw Error("GET " + url + ": the stream ended" + (rc == CURLE_OK ? "" : std::string(": ") + curl_easy_strerror(rc)));
}

std::string api_token(const std::string& token_file) {
  if (!token_file.empty()) return config::read_secret("", token_file, "", "--token-file");
  const char* env = std::getenv(kTokenVariable);
  return env ? env : "";
}

}  // namespace kubetrail::cli
