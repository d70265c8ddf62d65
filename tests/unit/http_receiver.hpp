// A real HTTP receiver on 127.0.0.1 (a free port) for plugin tests: records
// every request (method, path, headers, body) and answers with scripted
// statuses, headers, bodies and delays. Stops itself when destroyed.
#pragma once

#include <httplib.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test {

class HttpReceiver {
 public:
  struct Request {
    std::string method, path, body;
    httplib::Headers headers;
    std::string header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? std::string() : it->second;
    }
  };
  struct Reply {
    int status;
    std::string body;
    httplib::Headers headers;
    int delay_ms;
    Reply(int status_ = 200, std::string body_ = "ok", httplib::Headers headers_ = {}, int delay_ms_ = 0)
        : status(status_), body(std::move(body_)), headers(std::move(headers_)), delay_ms(delay_ms_) {}
  };

  HttpReceiver() {
    auto handle = [this](const httplib::Request& req, httplib::Response& res) {
      Reply reply;
      {
        std::lock_guard lock(mu_);
        requests_.push_back({req.method, req.path, req.body, req.headers});
        if (!script_.empty()) {
          reply = script_.front();
          script_.pop_front();
        }
      }
      if (reply.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
      res.status = reply.status;
      for (const auto& [k, v] : reply.headers) res.set_header(k, v);
      res.set_content(reply.body, "text/plain");
    };
    server_.Post(".*", handle);
    server_.Get(".*", handle);
    server_.set_read_timeout(5, 0);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 500 && !server_.is_running(); ++i)  // bounded: 5 s at most
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~HttpReceiver() {
    server_.stop();
    thread_.join();
  }

  // Replies for the next requests, in order; after them: 200 "ok".
  void script(std::vector<Reply> replies) {
    std::lock_guard lock(mu_);
    script_.assign(replies.begin(), replies.end());
  }
  std::vector<Request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Request> requests_;
  std::deque<Reply> script_;
};

}  // namespace test
