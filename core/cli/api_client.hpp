// A client of a running kubetrail's change API (server/change_api.hpp), for
// `kubetrail history --server` and `kubetrail dead-letters --server` - so
// that they work through `kubectl port-forward` to the pod.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace kubetrail::cli {

class ApiClient {
 public:
  // base: "http://127.0.0.1:9090" (a trailing slash is fine). token: the
  // bearer token, "" for none.
  ApiClient(std::string base, std::string token);

  // The body of a 2xx response. Anything else is a kubetrail::Error naming
  // the URL, the status and the server's error message.
  std::string get(const std::string& path_and_query) const;
  std::string post(const std::string& path_and_query) const;
  // Reads the Server-Sent Events of `path_and_query`, handing each event's
  // id and data to `on_event`, until `stop` is set (checked at least every
  // second) or the server ends the stream (a kubetrail::Error).
  void stream(const std::string& path_and_query,
              const std::function<void(const std::string& id, const std::string& data)>& on_event,
              const std::atomic<bool>& stop) const;

  // "a b" -> "a%20b": for query values.
  static std::string escape(const std::string& value);

 private:
  std::string request(const char* method, const std::string& path_and_query) const;
  std::string base_, token_;
};

// The variable holding the API token for --server.
inline constexpr const char* kTokenVariable = "KUBETRAIL_TOKEN";
// The token for --server: --token-file's content, else $KUBETRAIL_TOKEN.
std::string api_token(const std::string& token_file);

}  // namespace kubetrail::cli
