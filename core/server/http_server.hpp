// The operations endpoint: /metrics (Prometheus text format 0.0.4),
// /healthz (fails when a watch has been silent - no event, no bookmark -
// for longer than the stall timeout: a stuck kubetrail must not look
// healthy), /readyz (initial sync done and every handler created).
//
// Runs its own thread; the probes it calls must be thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.hpp"

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
  HttpServer(const std::string& listen, Metrics& metrics, Probes probes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  int port() const noexcept { return port_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace kubetrail::server
