#include "server/change_api.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/json_writer.hpp"
#include "server/ui_page.hpp"
#include "state/history.hpp"

namespace kubetrail::server {

namespace {

// A stream holds one of the server's worker threads for as long as it is
// open: a few, so that /metrics and the probes always find one free.
constexpr int kMaxStreams = 4;
constexpr size_t kMaxLimit = 1000;
constexpr auto kStreamPoll = std::chrono::milliseconds(200);
constexpr auto kKeepAlive = std::chrono::seconds(15);

// With its charset, as RFC 8259 allows: cpp-httplib then leaves the body
// uncompressed. It would brotli-compress plain "application/json" for any
// browser (which accepts br) at brotli's slowest quality: 0.7-1 s for a
// page of 500 change sets that takes 8 ms to make (bench/timeline_bench.py).
void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  std::string body = "{\"error\":";
  append_json_string(message, body);
  send_json(res, status, body + "}\n");
}

std::optional<std::string> param(const httplib::Request& req, const std::string& name) {
  if (!req.has_param(name.c_str())) return std::nullopt;
  return req.get_param_value(name.c_str());
}

// The filter of a request; a bad parameter is a 400 naming it.
std::optional<state::History::Filter> filter_of(const httplib::Request& req, httplib::Response& res) {
  try {
    return state::History::filter_from([&](const std::string& name) { return param(req, name); }, now_unix_ms());
  } catch (const Error& e) {
    send_error(res, 400, e.what());
    return std::nullopt;
  }
}

// One read-only connection per request thread would be as good; one shared
// (SQLite serializes it) is enough for a page and a few scripts, and opened
// on first use: the history file appears with the first change set kept.
class HistoryReader {
 public:
  explicit HistoryReader(std::filesystem::path path) : path_(std::move(path)) {}
  state::History* get() {
    std::lock_guard lock(mu_);
    if (!history_ && !path_.empty()) {
      std::error_code ec;
      if (std::filesystem::exists(path_, ec)) history_ = std::make_unique<state::History>(path_, true);
    }
    return history_.get();
  }
  bool kept() const { return !path_.empty(); }

 private:
  std::filesystem::path path_;
  std::mutex mu_;
  std::unique_ptr<state::History> history_;
};

std::string dead_letter_json(const state::OutboxLog::DeadLetter& d, const std::string& change_set) {
  std::string out = "{\"id\":";
  append_json_string(d.id, out);
  out += ",\"handler\":";
  append_json_string(d.handler, out);
  out += ",\"reason\":";
  append_json_string(d.reason, out);
  out += ",\"created\":" + std::to_string(d.created);
  if (!change_set.empty()) out += ",\"changeSet\":" + change_set;
  return out + "}";
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

bool same_token(const std::string& given, const std::string& expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ (expected.empty() ? 0 : expected[i % expected.size()]));
  return diff == 0 && !expected.empty();
}

ApiOptions api_access(const config::ServerConfig& server, std::string& why_off) {
  ApiOptions api;
  why_off.clear();
  if (!server.api) {
    why_off = "[server] api = false";
    return api;
  }
  std::string host = server.listen.substr(0, server.listen.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  api.token = config::read_secret(server.token_env, server.token_file, "[server] token_env", "[server] token_file");
  if (api.token.empty() && !is_loopback_host(host)) {
    why_off = "[server] listen " + server.listen +
              " is not a loopback address and no [server] token_env or token_file is set";
    return api;
  }
  api.enabled = true;
  return api;
}

void add_change_api(httplib::Server& server, ApiOptions options, const std::function<bool()>& running) {
  auto reader = std::make_shared<HistoryReader>(options.history);
  auto streams = std::make_shared<std::atomic<int>>(0);
  const std::string token = options.token;

  // Access: a bearer token when one is set; a write from another origin's
  // page (a browser sends those without asking) is refused either way.
  server.set_pre_routing_handler([token](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (!token.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string given = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : std::string();
      if (!same_token(given, token)) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"kubetrail\"");
        send_error(res, 401, "a bearer token is required ([server] token_env / token_file)");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (req.method != "GET" && req.has_header("Origin")) {
      const std::string origin = req.get_header_value("Origin");
      const std::string host = req.get_header_value("Host");
      if (origin != "http://" + host && origin != "https://" + host) {
        send_error(res, 403, "a write from another origin (" + origin + ") is refused");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  server.Get("/ui", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                   "img-src 'self' data:");
    res.set_content(std::string(ui_page()), "text/html; charset=utf-8");
  });

  auto no_history = [reader](httplib::Response& res) {
    if (!reader->kept()) {
      send_error(res, 404, "no history: kubetrail runs without a state store ([state] path = \"\")");
      return true;
    }
    return false;
  };

  server.Get("/api/v1/changes", [reader, no_history](const httplib::Request& req, httplib::Response& res) {
    if (no_history(res)) return;
    auto f = filter_of(req, res);
    if (!f) return;
    if (f->limit == 0 || f->limit > kMaxLimit) f->limit = req.has_param("limit") ? kMaxLimit : 100;
    std::vector<state::History::Row> rows;
    if (auto* h = reader->get()) rows = h->query(*f);
    std::string body = "{\"items\":[";
    for (size_t i = 0; i < rows.size(); ++i) body += (i ? "," : "") + rows[i].json;
    body += "]";
    if (rows.size() == f->limit) body += ",\"nextCursor\":\"" + state::History::cursor_after(rows.back()) + "\"";
    send_json(res, 200, body + "}\n");
  });

  server.Get("/api/v1/changes/histogram", [reader, no_history](const httplib::Request& req, httplib::Response& res) {
    if (no_history(res)) return;
    auto f = filter_of(req, res);
    if (!f) return;
    if (!req.has_param("since")) f->since_ms = now_unix_ms() - 3600 * 1000;
    if (f->until_ms == INT64_MAX) f->until_ms = now_unix_ms() + 1;
    size_t buckets = 60;
    if (auto b = param(req, "buckets")) buckets = std::clamp<size_t>(std::strtoul(b->c_str(), nullptr, 10), 1, 1000);
    std::vector<uint64_t> counts;
    if (auto* h = reader->get()) counts = h->histogram(*f, buckets);
    counts.resize(buckets, 0);
    std::string body =
        "{\"since\":" + std::to_string(f->since_ms) + ",\"until\":" + std::to_string(f->until_ms) + ",\"counts\":[";
    for (size_t i = 0; i < counts.size(); ++i) body += (i ? "," : "") + std::to_string(counts[i]);
    send_json(res, 200, body + "]}\n");
  });

  server.Get("/api/v1/changes/stream", [reader, no_history, streams, running](const httplib::Request& req,
                                                                              httplib::Response& res) {
    if (no_history(res)) return;
    auto f = filter_of(req, res);
    if (!f) return;
    if (streams->fetch_add(1) >= kMaxStreams) {
      streams->fetch_sub(1);
      send_error(res, 503, "too many streams open (" + std::to_string(kMaxStreams) + ")");
      return;
    }
    // Where to start: after the change set the client saw last (the
    // EventSource header, or lastEventId= for a client that cannot set
    // it); else from `since` when asked; else from now.
    std::string last_id = req.get_header_value("Last-Event-ID");
    if (last_id.empty()) last_id = param(req, "lastEventId").value_or("");
    auto* h = reader->get();
    int64_t after = 0;
    std::string note;
    if (!last_id.empty()) {
      after = h ? h->seq_of(last_id) : 0;
      if (!after) note = ": Last-Event-ID " + last_id + " is not in the history (compacted?); from now\n\n";
    }
    if (!after && (last_id.empty() ? !req.has_param("since") : true)) after = h ? h->last_seq() : 0;
    f->after_seq = after;
    f->in_written_order = true;
    f->limit = 500;
    f->until_ms = INT64_MAX;
    if (!last_id.empty() || !req.has_param("since")) f->since_ms = 0;
    auto filter = std::make_shared<state::History::Filter>(*f);
    auto intro = std::make_shared<std::string>("retry: 2000\n" + (note.empty() ? std::string("\n") : note));
    auto last_write = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [reader, filter, intro, last_write, running](size_t, httplib::DataSink& sink) {
          if (!intro->empty()) {
            std::string first = std::move(*intro);
            intro->clear();
            return sink.write(first.data(), first.size());
          }
          if (!running() || !sink.is_writable()) return false;
          std::vector<state::History::Row> rows;
          try {
            if (auto* h = reader->get()) rows = h->query(*filter);
          } catch (const std::exception& e) {
            spdlog::warn("change stream: {}", e.what());
          }
          std::string out;
          for (const auto& r : rows) {
            out += "id: " + r.id + "\ndata: " + r.json + "\n\n";
            filter->after_seq = std::max(filter->after_seq, r.seq);
          }
          const auto now = std::chrono::steady_clock::now();
          if (out.empty() && now - *last_write >= kKeepAlive) out = ": keep-alive\n\n";
          if (!out.empty()) {
            *last_write = now;
            return sink.write(out.data(), out.size());
          }
          std::this_thread::sleep_for(kStreamPoll);
          return true;
        },
        [streams](bool) { streams->fetch_sub(1); });
  });

  const DeadLetterDesk desk = options.dead_letters;
  auto answer = [](httplib::Response& res, const DeskAnswer& a) {
    if (a.status == 200)
      send_json(res, 200, a.body);
    else
      send_error(res, a.status, a.body);
  };
  auto handler_of = [](const httplib::Request& req) { return param(req, "handler").value_or(""); };
  // ?id= (a change set id holds slashes: a query parameter, not a path
  // segment) and &handler= narrow it; with id, each comes with its change set.
  server.Get("/api/v1/dead-letters", [desk, answer, handler_of](const httplib::Request& req, httplib::Response& res) {
    answer(res, dead_letters_list(desk, param(req, "id"), handler_of(req)));
  });
  // POST /api/v1/dead-letters/redeliver?id=  and  .../drop?id=
  server.Post(R"(/api/v1/dead-letters/(redeliver|drop))",
              [desk, answer, handler_of](const httplib::Request& req, httplib::Response& res) {
                answer(res, dead_letters_settle(desk, req.matches[1] == "redeliver", param(req, "id").value_or(""),
                                                handler_of(req)));
              });
}

DeskAnswer dead_letters_list(const DeadLetterDesk& desk, const std::optional<std::string>& id,
                             const std::string& handler) {
  if (!desk.list) return {404, "no dead letters: kubetrail runs without a state store"};
  std::vector<state::OutboxLog::DeadLetter> letters;
  for (auto& d : desk.list())
    if ((!id || d.id == *id) && (handler.empty() || d.handler == handler)) letters.push_back(std::move(d));
  if (id && letters.empty()) return {404, "no dead letter " + *id};
  std::string body = "{\"items\":[";
  for (size_t i = 0; i < letters.size(); ++i)
    body += (i ? "," : "") + dead_letter_json(letters[i], id ? desk.json(letters[i].seq) : std::string());
  return {200, body + "]}\n"};
}

DeskAnswer dead_letters_settle(const DeadLetterDesk& desk, bool redeliver, const std::string& id,
                               const std::string& handler) {
  if (!desk.list) return {404, "no dead letters: kubetrail runs without a state store"};
  if (id.empty()) return {400, "id: the change set id is required"};
  std::string body = std::string("{\"") + (redeliver ? "redelivered" : "dropped") + "\":[";
  bool found = false, first = true;
  for (const auto& d : desk.list()) {
    if (d.id != id || (!handler.empty() && d.handler != handler)) continue;
    found = true;
    if (redeliver ? desk.redeliver(d) == 0 : !desk.drop(d)) continue;  // settled meanwhile
    body += std::string(first ? "" : ",") + dead_letter_json(d, "");
    first = false;
  }
  if (!found) return {404, "no dead letter " + id + (handler.empty() ? "" : " of handler " + handler)};
  return {200, body + "]}\n"};
}

}  // namespace kubetrail::server
