// The operations endpoint: /metrics (Prometheus text format 0.0.4),
// /healthz (fails when a watch has been silent - no event, no bookmark -
// for longer than the stall timeout: a stuck kubetrail must not look
// healthy), /readyz (initial sync done and every handler created).
//
// With the change API (server/change_api.hpp) also /api/v1/... and /ui.
//
// Runs its own threads; the probes and desks it calls must be thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.hpp"
#include "server/change_api.hpp"

namespace httplib {
class Server;
}

namespace kubetrail::server {

struct Probes {
  std::function<std::string()> unhealthy;  // "" when healthy, else why
  std::function<std::string()> unready;    // "" when ready, else why
};

class HttpServer {
 public:
  // listen: "host:port". Throws kubetrail::Error when it cannot bind.
  HttpServer(const std::string& listen, Metrics& metrics, Probes probes, ApiOptions api = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  int port() const noexcept { return port_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> running_{true};
  int port_ = 0;
};

}  // namespace kubetrail::server
