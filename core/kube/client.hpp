// An HTTP client for one Kubernetes API server over libcurl: TLS with the
// kubeconfig's CA and client certificates, bearer tokens (static, from a
// file that may rotate, or from an exec credential plugin, re-run on expiry
// and on 401), gzip, a kubetrail User-Agent. No credential is ever written
// to a log or an error message.
//
// Thread-safe: each call uses its own curl handle, and all of them run on
// one shared multi handle (kube/transport.hpp), so that over HTTP/2 they
// share one connection; credentials are shared under a lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "kube/api.hpp"
#include "kube/kubeconfig.hpp"
#include "kube/transport.hpp"

namespace kubetrail::kube {

class Client final : public Api {
 public:
  explicit Client(Connection connection);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  using Response = kube::Response;

  // GET path (with its query), the whole body. `accept` replaces the
  // default Accept header (application/json), e.g. for aggregated discovery.
  Response get(std::string_view path, long timeout_ms = 60000, std::string_view accept = {},
               std::string* body_memory = nullptr) override;
  // A request with a body (POST, PUT, PATCH), the whole answer. Writes are
  // never retried here: the caller decides (a conflict is an answer).
  Response send(std::string_view method, std::string_view path, std::string_view body,
                std::string_view content_type = "application/json", long timeout_ms = 10000);
  // GET path, handing the body to on_data as it arrives (a watch). Returns
  // when the server ends the response, on_data returns false, `stop` becomes
  // true (checked at least once a second), or after timeout_ms.
  Response stream(std::string_view path, const std::function<bool(std::string_view)>& on_data,
                  const std::atomic<bool>& stop, long timeout_ms) override;

  const Connection& connection() const noexcept { return conn_; }
  // Connections opened to the server so far (over HTTP/2: one, shared).
  uint64_t connections_opened() const noexcept { return transport_->connections_opened(); }

 private:
  struct Credentials {
    std::string token;
    std::string cert_pem, key_pem;
  };
  struct Request {
    std::string_view method, path, body, content_type, accept;
    std::string* body_memory = nullptr;  // see Api::get
  };
  Credentials credentials(bool refresh);
  Credentials run_exec_plugin();
  Response perform(const Request& req, const std::function<bool(std::string_view)>* on_data,
                   const std::atomic<bool>* stop, long timeout_ms);
  Response perform_once(const Request& req, const Credentials& creds,
                        const std::function<bool(std::string_view)>* on_data, const std::atomic<bool>* stop,
                        long timeout_ms);

  Connection conn_;
  std::unique_ptr<Transport> transport_;
  std::mutex mu_;
  Credentials exec_creds_;
  std::chrono::system_clock::time_point exec_expiry_{};
  bool exec_valid_ = false;
  std::string file_token_;
  std::chrono::steady_clock::time_point file_token_read_{};
};

}  // namespace kubetrail::kube
