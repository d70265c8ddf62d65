#include "server/http_server.hpp"

#include <httplib.h>

#include "common/error.hpp"
#include "common/process_metrics.hpp"
#include "common/thread_name.hpp"

namespace kubetrail::server {

HttpServer::HttpServer(const std::string& listen, Metrics& metrics, Probes probes, ApiOptions api)
    : server_(std::make_unique<httplib::Server>()) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw Error("[server] listen: expected HOST:PORT, got \"" + listen + "\"");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = std::atoi(listen.substr(colon + 1).c_str());
  server_->Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render() + process_metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto probe = [](std::function<std::string()> check) {
    return [check](const httplib::Request&, httplib::Response& res) {
      std::string why = check ? check() : std::string();
      res.status = why.empty() ? 200 : 503;
      res.set_content(why.empty() ? "ok\n" : why + "\n", "text/plain");
    };
  };
  server_->Get("/healthz", probe(probes.unhealthy));
  server_->Get("/readyz", probe(probes.unready));
  if (api.enabled) add_change_api(*server_, std::move(api), [this] { return running_.load(); });
  if (port == 0)
    port_ = server_->bind_to_any_port(host);
  else
    port_ = server_->bind_to_port(host, port) ? port : -1;
  if (port_ <= 0)
    throw Error("[server] listen: cannot listen on " + listen + " (address in use, or not a local address)");
  thread_ = std::thread([this] {
    name_this_thread("kt-http");
    server_->listen_after_bind();
  });
}

HttpServer::~HttpServer() {
  running_ = false;  // open streams end
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kubetrail::server
