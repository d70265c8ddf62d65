#include "kube/client.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "version.hpp"

extern char** environ;

namespace kubetrail::kube {

namespace {

void init_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What the header and progress callbacks (on the transport's I/O thread)
// learn; read by the caller once the transfer is over.
struct Transfer {
  const std::atomic<bool>* stop = nullptr;
  uint32_t retry_after_ms = 0;
};

size_t on_header(char* p, size_t size, size_t n, void* ud) {
  auto* t = static_cast<Transfer*>(ud);
  std::string_view line(p, size * n);
  constexpr std::string_view kRetry = "retry-after:";
  if (line.size() > kRetry.size() && strncasecmp(line.data(), kRetry.data(), kRetry.size()) == 0) {
    long s = std::strtol(std::string(line.substr(kRetry.size())).c_str(), nullptr, 10);
    if (s > 0) t->retry_after_ms = static_cast<uint32_t>(std::min(s, 600L) * 1000);
  }
  return size * n;
}

int on_progress(void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(ud);
  return t->stop && t->stop->load() ? 1 : 0;
}

// Runs argv with extra environment; stdout and stderr captured (bounded).
int run_capture(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env, std::string& out,
                std::string& err, int timeout_ms) {
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, po[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> a = argv;
  for (auto& s : a) args.push_back(s.data());
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(po[1]);
  close(pe[1]);
  if (rc != 0) {
    close(po[0]);
    close(pe[0]);
    err = std::strerror(rc);
    return -1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool open_o = true, open_e = true;
  char buf[4096];
  while (open_o || open_e) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    pollfd fds[2];
    int n = 0;
    if (open_o) fds[n++] = {po[0], POLLIN, 0};
    if (open_e) fds[n++] = {pe[0], POLLIN, 0};
    if (poll(fds, n, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      ssize_t r = read(fds[i].fd, buf, sizeof buf);
      std::string& s = fds[i].fd == po[0] ? out : err;
      if (r > 0 && s.size() < 1 << 20) s.append(buf, r);
      if (r <= 0) (fds[i].fd == po[0] ? open_o : open_e) = false;
    }
  }
  close(po[0]);
  close(pe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// An unreadable time is the epoch: the credential counts as expired and is
// asked for again.
std::chrono::system_clock::time_point parse_rfc3339(std::string_view s) {
  auto ms = rfc3339_to_ms(s);
  return ms ? std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms))
            : std::chrono::system_clock::time_point{};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Client::Client(Connection connection) : conn_(std::move(connection)) {
  init_curl();
  transport_ = std::make_unique<Transport>();
}
Client::~Client() = default;

Client::Credentials Client::run_exec_plugin() {
  const auto& p = *conn_.exec;
  std::vector<std::string> argv{p.command};
  argv.insert(argv.end(), p.args.begin(), p.args.end());
  std::vector<std::string> env;
  for (const auto& [k, v] : p.env) env.push_back(k + "=" + v);
  env.push_back("KUBERNETES_EXEC_INFO={\"apiVersion\":\"" + p.api_version +
                "\",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false}}");
  std::string out, err;
  int rc = run_capture(argv, env, out, err, 60000);
  std::string where = conn_.source + ": exec credential plugin " + p.command;
  if (rc != 0) {
    std::string last = err.substr(0, err.find('\n'));
    throw Error(where + (rc < 0 ? " could not run" : " exited " + std::to_string(rc)) +
                (last.empty() ? "" : ": " + last) + (p.install_hint.empty() ? "" : " (" + p.install_hint + ")"));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(simdjson::padded_string(out)).get(doc) != simdjson::SUCCESS)
    throw Error(where + ": its output is not an ExecCredential JSON document");
  Credentials c;
  std::string_view token, cert, key, expiry;
  if (doc.at_pointer("/status/token").get(token) == simdjson::SUCCESS) c.token.assign(token);
  if (doc.at_pointer("/status/clientCertificateData").get(cert) == simdjson::SUCCESS) c.cert_pem.assign(cert);
  if (doc.at_pointer("/status/clientKeyData").get(key) == simdjson::SUCCESS) c.key_pem.assign(key);
  if (c.token.empty() && (c.cert_pem.empty() || c.key_pem.empty()))
    throw Error(where + ": its ExecCredential has neither status.token nor a client certificate and key");
  exec_expiry_ = doc.at_pointer("/status/expirationTimestamp").get(expiry) == simdjson::SUCCESS
                     ? parse_rfc3339(expiry)
                     : std::chrono::system_clock::time_point::max();
  return c;
}

Client::Credentials Client::credentials(bool refresh) {
  std::lock_guard lock(mu_);
  Credentials c;
  c.cert_pem = conn_.client_cert_pem;
  c.key_pem = conn_.client_key_pem;
  c.token = conn_.token;
  if (!conn_.token_file.empty()) {
    // Bound service-account tokens rotate: re-read the file once a minute.
    auto now = std::chrono::steady_clock::now();
    if (refresh || file_token_.empty() || now - file_token_read_ > std::chrono::minutes(1)) {
      file_token_ = read_file(conn_.token_file);
      file_token_read_ = now;
      if (file_token_.empty())
        throw Error(conn_.source + ": token file " + conn_.token_file + " is empty or unreadable");
    }
    c.token = file_token_;
  }
  if (conn_.exec) {
    bool expired = std::chrono::system_clock::now() + std::chrono::seconds(10) >= exec_expiry_;
    if (refresh || !exec_valid_ || expired) {
      exec_creds_ = run_exec_plugin();
      exec_valid_ = true;
    }
    if (!exec_creds_.token.empty()) c.token = exec_creds_.token;
    if (!exec_creds_.cert_pem.empty()) {
      c.cert_pem = exec_creds_.cert_pem;
      c.key_pem = exec_creds_.key_pem;
    }
  }
  return c;
}

Client::Response Client::perform_once(const Request& req, const Credentials& creds,
                                      const std::function<bool(std::string_view)>* on_data,
                                      const std::atomic<bool>* stop, long timeout_ms) {
  const std::string_view path = req.path;
  Response r;
  if (req.body_memory) {
    r.body.swap(*req.body_memory);
    r.body.clear();
  }
  CURL* curl = curl_easy_init();
  if (!curl) {
    r.error = "curl_easy_init failed";
    return r;
  }
  Transfer t;
  t.stop = stop;
  std::string url = conn_.server + std::string(path);
  std::string accept = "Accept: " + std::string(req.accept.empty() ? "application/json" : req.accept);
  curl_slist* headers = curl_slist_append(nullptr, accept.c_str());
  std::string content_type;
  if (!req.method.empty() && req.method != "GET") {
    content_type = "Content-Type: " + std::string(req.content_type);
    headers = curl_slist_append(headers, content_type.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, std::string(req.method).c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  std::string auth;
  if (!creds.token.empty()) {
    auth = "Authorization: Bearer " + creds.token;
    headers = curl_slist_append(headers, auth.c_str());
  }
  std::string agent = std::string("kubetrail/") + KUBETRAIL_VERSION;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, agent.c_str());
  // gzip and friends, as the server offers - unless the link is cheaper
  // than inflating (Connection::compress, [cluster] compression).
  if (conn_.compress) curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_blob ca{const_cast<char*>(conn_.ca_pem.data()), conn_.ca_pem.size(), CURL_BLOB_NOCOPY};
  if (!conn_.ca_pem.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
  if (conn_.insecure_skip_tls_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_blob cert{const_cast<char*>(creds.cert_pem.data()), creds.cert_pem.size(), CURL_BLOB_NOCOPY};
  curl_blob key{const_cast<char*>(creds.key_pem.data()), creds.key_pem.size(), CURL_BLOB_NOCOPY};
  if (!creds.cert_pem.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (!conn_.username.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, conn_.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, conn_.password.c_str());
  }
  if (!conn_.proxy_url.empty()) curl_easy_setopt(curl, CURLOPT_PROXY, conn_.proxy_url.c_str());
  curl_slist* connect_to = nullptr;
  if (!conn_.tls_server_name.empty()) {
    // Verify the certificate against tls-server-name while connecting to the
    // server's address: ask for that name, and route it to the real host.
    const auto server = parse_server_address(conn_.server);
    url = "https://" + conn_.tls_server_name + ":" + server.port + server.prefix + std::string(path);
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    std::string rule = conn_.tls_server_name + ":" + server.port + ":" + server.url_host() + ":" + server.port;
    connect_to = curl_slist_append(nullptr, rule.c_str());
    curl_easy_setopt(curl, CURLOPT_CONNECT_TO, connect_to);
  }
  // Through the shared multi handle: over HTTP/2 every request of this
  // client is a stream on one connection. The body comes back here.
  // A whole body is held to at most 64 MiB (a list page of 500 Pods is
  // ~4 MB): past that the transfer is stopped with an error that says so,
  // rather than a truncated body parsed as broken JSON.
  constexpr size_t kMaxBody = size_t{1} << 26;
  Transport::Outcome out;
  if (on_data) {
    // A watch: each piece to the caller as it comes; a body that is not
    // 2xx (the watch refused: a Status) is kept whole.
    bool too_large = false;
    auto sink = [&](std::string_view chunk, long status) {
      if (status >= 200 && status < 300) return (*on_data)(chunk);
      if (r.body.size() + chunk.size() > kMaxBody) {
        too_large = true;
        return false;
      }
      r.body.append(chunk);
      return true;
    };
    out = transport_->perform(curl, sink, stop);
    out.too_large = too_large;
  } else {
    // Written where it goes by the I/O thread, with simdjson's padding
    // after it, so that a list page of ~4 MB is parsed where it is: neither
    // copied out of the transport's pieces nor into the parser's buffer.
    out = transport_->perform_whole(curl, r.body, kMaxBody, simdjson::SIMDJSON_PADDING, stop);
  }
  CURLcode rc = out.code;
  r.status = out.status;
  if (char* ct = nullptr; curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) r.content_type = ct;
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && out.stopped_by_sink) &&
      !(rc == CURLE_ABORTED_BY_CALLBACK && stop && stop->load()))
    r.error = curl_easy_strerror(rc);  // a fixed text: no URL, no credential
  // CURLE_SSL_CONNECT_ERROR is left out: a handshake cut short is also what
  // a server that is restarting gives.
  r.tls_rejected = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
                   rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR ||
                   rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH || rc == CURLE_SSL_CRL_BADFILE;
  if (rc == CURLE_OPERATION_TIMEDOUT && on_data && r.status >= 200 && r.status < 300) r.error.clear();  // a watch's end
  // A 2xx whose body did not come whole (the connection closed or the
  // timeout struck after the head) is no answer: callers go by the status,
  // and half a body is not what the server said - parsed, it was reported
  // as "not JSON". Other statuses keep theirs: a 401 or 503 is an answer
  // whatever became of its body. A watch's body is judged by its framer.
  // (A request stopped by `stop` mid-body has no error, and no answer.)
  if (!on_data && rc != CURLE_OK && r.status >= 200 && r.status < 300) {
    r.status = 0;
    r.body.clear();
  }
  if (out.too_large) {
    r.error = "response body larger than " + std::to_string(kMaxBody >> 20) + " MiB: not read";
    r.status = 0;
    r.body.clear();
  }
  r.retry_after_ms = t.retry_after_ms;
  curl_slist_free_all(headers);
  curl_slist_free_all(connect_to);
  curl_easy_cleanup(curl);
  return r;
}

Client::Response Client::perform(const Request& req, const std::function<bool(std::string_view)>* on_data,
                                 const std::atomic<bool>* stop, long timeout_ms) {
  Response r;
  try {
    r = perform_once(req, credentials(false), on_data, stop, timeout_ms);
    // A 401 with an exec plugin or a rotating token file: the credential
    // may have expired early; get a fresh one and try once more.
    if (r.status == 401 && (conn_.exec || !conn_.token_file.empty()))
      r = perform_once(req, credentials(true), on_data, stop, timeout_ms);
  } catch (const Error& e) {
    r.status = 0;
    r.error = e.what();
  }
  return r;
}

Client::Response Client::get(std::string_view path, long timeout_ms, std::string_view accept,
                             std::string* body_memory) {
  return perform(Request{"GET", path, {}, {}, accept, body_memory}, nullptr, nullptr, timeout_ms);
}

Client::Response Client::send(std::string_view method, std::string_view path, std::string_view body,
                              std::string_view content_type, long timeout_ms) {
  return perform(Request{method, path, body, content_type, {}}, nullptr, nullptr, timeout_ms);
}

Client::Response Client::stream(std::string_view path, const std::function<bool(std::string_view)>& on_data,
                                const std::atomic<bool>& stop, long timeout_ms) {
  return perform(Request{"GET", path, {}, {}, {}}, &on_data, &stop, timeout_ms);
}

}  // namespace kubetrail::kube
