// The shared multi-handle transport (kube/transport.hpp) against a real
// HTTP server on 127.0.0.1: bodies arrive whole and in order on the caller's
// thread even when the caller falls far behind (pause and resume), a sink
// that says stop and a stop flag both end a never-ending stream promptly, and
// concurrent transfers all complete.
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_name.hpp"
#include "http_receiver.hpp"
#include "kube/client.hpp"
#include "kube/discovery.hpp"
#include "kube/transport.hpp"

using namespace kubetrail;

namespace {

// Event n of /events: 16 bytes, {"event":00042}\n.
std::string event_piece(int n) {
  std::string digits = std::to_string(n);
  return "{\"event\":" + std::string(5 - digits.size(), '0') + digits + "}\n";
}

// A server with a large body, a stream of small events and an endless stream.
struct Server {
  httplib::Server http;
  int port = 0;
  std::thread thread;
  Server() {
    http.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/octet-stream", [](size_t offset, httplib::DataSink& sink) {
        constexpr size_t kTotal = 24 << 20, kPiece = 64 << 10;
        if (offset >= kTotal) {
          sink.done();
          return true;
        }
        std::string piece(kPiece, '\0');
        for (size_t i = 0; i < kPiece; ++i) piece[i] = static_cast<char>((offset + i) % 251);
        return sink.write(piece.data(), piece.size());
      });
    });
    http.Get("/events", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [](size_t offset, httplib::DataSink& sink) {
        int n = static_cast<int>(offset / 16);  // each piece is 16 bytes
        if (n >= 400) {
          sink.done();
          return true;
        }
        std::string piece = event_piece(n);
        return sink.write(piece.data(), piece.size());
      });
    });
    http.Get("/endless", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [](size_t, httplib::DataSink& sink) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return sink.write("tick\n", 5);
      });
    });
    port = http.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { http.listen_after_bind(); });
    for (int i = 0; i < 500 && !http.is_running(); ++i)  // bounded: 5 s at most
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Server() {
    http.stop();
    thread.join();
  }
  CURL* easy(const std::string& path) const {
    CURL* c = curl_easy_init();
    std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    return c;
  }
};

// A listening socket on 127.0.0.1, on a port the kernel picks.
struct LoopbackListener {
  int fd = -1;
  int port = 0;
  explicit LoopbackListener(int backlog = 1) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd, backlog) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;
  void wake() const { shutdown(fd, SHUT_RDWR); }  // ends an accept() still waiting
  ~LoopbackListener() { close(fd); }
};

// A request's head, up to its blank line (at most 64 KiB), by `read`
// (recv or SSL_read of up to n bytes into p).
template <class Read>
std::string read_head(Read read) {
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
    auto n = read(buf, sizeof buf);
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  return head;
}

// An HTTP proxy on 127.0.0.1 for one CONNECT: it opens the tunnel and
// relays bytes both ways until either side closes (bounded: 20 s).
struct ConnectProxy {
  LoopbackListener listener;
  int port = listener.port;
  std::atomic<int> tunnels{0};
  std::thread thread;

  ConnectProxy() {
    thread = std::thread([this] { serve(); });
  }
  ~ConnectProxy() {
    listener.wake();
    thread.join();
  }

  void serve() {
    int client = accept(listener.fd, nullptr, nullptr);
    if (client < 0) return;
    std::string head = read_head([client](char* p, size_t n) { return recv(client, p, n, 0); });
    char buf[65536];
    int target_port = 0;
    if (std::sscanf(head.c_str(), "CONNECT 127.0.0.1:%d", &target_port) == 1) {
      int target = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      to.sin_port = htons(static_cast<uint16_t>(target_port));
      if (connect(target, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
        ++tunnels;
        std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
        send(client, ok.data(), ok.size(), MSG_NOSIGNAL);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        bool open = true;
        while (open && std::chrono::steady_clock::now() < deadline) {
          pollfd fds[2] = {{client, POLLIN, 0}, {target, POLLIN, 0}};
          if (poll(fds, 2, 100) <= 0) continue;
          for (int i = 0; i < 2 && open; ++i) {
            if (!fds[i].revents) continue;
            ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
            if (n <= 0 || send(fds[1 - i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) open = false;
          }
        }
      }
      close(target);
    }
    close(client);
  }
};

// A consumer that falls behind until more than kPauseBytes queue up and
// the transfer is paused (bounded: 10 s; a fixed 500 ms was not always
// enough under ASan, where the server writes slowly), then checks every
// byte against the servers' pattern (its offset % 251).
struct FallingBehind {
  kube::Transport& transport;
  size_t got = 0, wrong = 0;
  bool read(std::string_view chunk) {
    for (int i = 0; got == 0 && i < 200 && transport.pauses() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (size_t i = 0; i < chunk.size(); ++i)
      if (chunk[i] != static_cast<char>((got + i) % 251)) ++wrong;
    got += chunk.size();
    return true;
  }
};

// A TLS server on 127.0.0.1 that answers one request with a chunked body:
// `records` chunks (record_payload(i) each), each its own TLS record, sent
// in one write (so they reach the client's socket together), then nothing
// for `hold`, then the body's end. A self-signed certificate made at start
// (the client does not verify it); HTTP/1.1, as no ALPN is offered back.
struct TlsBurstServer {
  int records;
  std::chrono::milliseconds hold;
  std::function<std::string(int)> record_payload;
  LoopbackListener listener;
  int port = listener.port;
  SSL_CTX* ctx = nullptr;
  std::thread thread;
  std::atomic<int64_t> burst_sent_ns{0};  // steady_clock, once the burst is written

  TlsBurstServer(int records_, std::chrono::milliseconds hold_, std::function<std::string(int)> payload = event_piece)
      : records(records_), hold(hold_), record_payload(std::move(payload)) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    thread = std::thread([this] { serve(); });
  }
  ~TlsBurstServer() {
    listener.wake();
    thread.join();
    SSL_CTX_free(ctx);
  }

  CURL* easy(const std::string& path) const {
    CURL* c = curl_easy_init();
    std::string url = "https://127.0.0.1:" + std::to_string(port) + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    return c;
  }

  // Writes what `ssl` has put in its memory BIO to the socket, in one send.
  static void flush(SSL* ssl, int fd) {
    char* data = nullptr;
    long n = BIO_get_mem_data(SSL_get_wbio(ssl), &data);
    for (long off = 0; off < n;) {
      ssize_t w = send(fd, data + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w <= 0) break;
      off += w;
    }
    (void)BIO_reset(SSL_get_wbio(ssl));
  }

  void serve() {
    int fd = accept(listener.fd, nullptr, nullptr);
    if (fd < 0) return;
    SSL* ssl = SSL_new(ctx);
    SSL_set_bio(ssl, BIO_new_socket(fd, BIO_NOCLOSE), BIO_new_socket(fd, BIO_NOCLOSE));
    if (SSL_accept(ssl) == 1) {
      read_head([ssl](char* p, size_t n) { return SSL_read(ssl, p, static_cast<int>(n)); });
      // From here on each SSL_write makes one record in memory.
      SSL_set0_wbio(ssl, BIO_new(BIO_s_mem()));
      std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
      SSL_write(ssl, head.data(), static_cast<int>(head.size()));
      flush(ssl, fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the head read alone, then the burst
      for (int i = 0; i < records; ++i) {
        std::string payload = record_payload(i);
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
        std::string chunk = size + payload + "\r\n";
        SSL_write(ssl, chunk.data(), static_cast<int>(chunk.size()));
      }
      flush(ssl, fd);
      burst_sent_ns = std::chrono::steady_clock::now().time_since_epoch().count();
      std::this_thread::sleep_for(hold);
      SSL_write(ssl, "0\r\n\r\n", 5);
      SSL_shutdown(ssl);
      flush(ssl, fd);
    }
    SSL_free(ssl);
    close(fd);
  }
};

}  // namespace

TEST_CASE("transport: a consumer far behind gets the whole body in order (pause and resume)") {
  Server server;
  kube::Transport transport;
  CURL* easy = server.easy("/big");
  FallingBehind reader{transport};
  auto out = transport.perform(
      easy,
      [&](std::string_view chunk, long status) {
        CHECK(status == 200);
        return reader.read(chunk);
      },
      nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OK);
  CHECK(out.status == 200);
  CHECK(reader.got == size_t{24} << 20);
  CHECK(reader.wrong == 0);
  CHECK(transport.pauses() >= 1);  // it did fall behind
}

// A body wanted whole (a list page) is written into the caller's string by
// the I/O thread, with room kept after it for the parser's padding: the
// caller's thread neither copies it out of pieces nor wakes per piece.
TEST_CASE("transport: a body wanted whole arrives in the caller's string, in order, with room after it") {
  Server server;
  kube::Transport transport;
  CURL* easy = server.easy("/big");
  std::string body = "left from the last page";  // its memory is reused; its bytes are not kept
  body.clear();
  auto out = transport.perform_whole(easy, body, size_t{64} << 20, 64, nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OK);
  CHECK(out.status == 200);
  CHECK_FALSE(out.too_large);
  REQUIRE(body.size() == size_t{24} << 20);
  size_t wrong = 0;
  for (size_t i = 0; i < body.size(); ++i)
    if (body[i] != static_cast<char>(i % 251)) ++wrong;
  CHECK(wrong == 0);
  CHECK(body.capacity() >= body.size() + 64);
  CHECK(transport.pauses() == 0);  // nothing queued for a caller: nothing to fall behind
}

TEST_CASE("transport: a body wanted whole that passes its limit stops the transfer") {
  Server server;
  kube::Transport transport;
  CURL* easy = server.easy("/big");
  std::string body;
  auto out = transport.perform_whole(easy, body, size_t{1} << 20, 64, nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.too_large);
  CHECK(out.code == CURLE_WRITE_ERROR);
  CHECK(body.size() <= size_t{1} << 20);
}

// Group commit across reads: what arrived while the caller was busy comes in
// one sink call, not one per piece curl read (a watch's informer commits
// each call in one transaction). Failed before on_write coalesced: 400
// pieces, ~400 calls.
TEST_CASE("transport: pieces that arrive while the caller is busy are handed over together") {
  Server server;
  kube::Transport transport;
  CURL* easy = server.easy("/events");
  std::string body;
  int calls = 0;
  auto out = transport.perform(
      easy,
      [&](std::string_view chunk, long) {
        if (calls++ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // busy: the rest queues up
        body.append(chunk);
        return true;
      },
      nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OK);
  REQUIRE(body.size() == 400 * 16);
  for (int n = 0; n < 400; ++n) CHECK(body.compare(static_cast<size_t>(n) * 16, 16, event_piece(n)) == 0);
  CHECK(calls <= 10);
}

// Each piece had memory of its own, so the I/O thread paid a page fault per
// 4 KiB of every piece; a piece now starts in the memory the caller handed
// back. (Failed before: queue_piece had no spare and always allocated.)
TEST_CASE("transport: a new piece is made in a spare's memory, which it takes from the spares") {
  std::deque<std::string> pieces;
  std::vector<std::string> spares(2);
  spares[0].reserve(32 << 10);
  spares[1].reserve(64 << 10);
  const char* memory = spares[1].data();
  kube::Transport::queue_piece(pieces, "first", &spares);
  REQUIRE(pieces.size() == 1);
  CHECK(pieces[0] == "first");
  CHECK(pieces[0].data() == memory);  // the last spare: the one the caller handed back last
  REQUIRE(spares.size() == 1);
  kube::Transport::queue_piece(pieces, "+second", &spares);  // joins the last piece
  REQUIRE(pieces.size() == 1);
  CHECK(pieces[0] == "first+second");
  CHECK(pieces[0].data() == memory);
  std::string big(kube::Transport::kCoalesceBytes, 'x');
  kube::Transport::queue_piece(pieces, big, &spares);  // too big to join: a piece of its own, in the other spare
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[1] == big);
  CHECK(spares.empty());
  kube::Transport::queue_piece(pieces, "third", &spares);  // no spare left: memory of its own
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[2] == "third");
}

// A piece grown by doubling copied what it held at each step: in a burst of
// 8 KB events about one more copy of every byte on the I/O thread. It now
// grows once, to the most a piece holds. (Failed before: the piece moved
// at each doubling, six times on the way to 1 MiB.)
TEST_CASE("transport: a piece that must grow grows once, to the most a piece holds") {
  std::deque<std::string> pieces;
  const std::string event(8 << 10, 'e');
  kube::Transport::queue_piece(pieces, event);
  kube::Transport::queue_piece(pieces, event);  // past its capacity: grown
  REQUIRE(pieces.size() == 1);
  const char* memory = pieces[0].data();
  CHECK(pieces[0].capacity() >= kube::Transport::kCoalesceBytes);
  int moves = 0;
  while (pieces.size() == 1) {
    kube::Transport::queue_piece(pieces, event);
    if (pieces.size() == 1 && pieces[0].data() != memory) {
      ++moves;
      memory = pieces[0].data();
    }
  }
  CHECK(moves == 0);
  CHECK(pieces[0].size() <= kube::Transport::kCoalesceBytes);
  CHECK(pieces[0].size() + event.size() > kube::Transport::kCoalesceBytes);
  CHECK(pieces[1] == event);
}

TEST_CASE("transport: a sink that says stop, or the stop flag, ends an endless stream") {
  Server server;
  kube::Transport transport;
  CURL* easy = server.easy("/endless");
  int ticks = 0;
  auto out = transport.perform(
      easy, [&](std::string_view, long) { return ++ticks < 3; }, nullptr);
  CHECK(out.stopped_by_sink);
  CHECK(out.code == CURLE_WRITE_ERROR);
  curl_easy_cleanup(easy);

  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  easy = server.easy("/endless");
  auto started = std::chrono::steady_clock::now();
  out = transport.perform(
      easy, [](std::string_view, long) { return true; }, &stop);
  stopper.join();
  CHECK(out.stopped);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  curl_easy_cleanup(easy);
}

TEST_CASE("transport: transfers from many threads run side by side on one multi handle") {
  Server server;
  kube::Transport transport;
  std::atomic<int> complete{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&] {
      CURL* easy = server.easy("/big");
      size_t got = 0;
      auto out = transport.perform(
          easy,
          [&](std::string_view c, long) {
            got += c.size();
            return true;
          },
          nullptr);
      if (out.code == CURLE_OK && got == size_t{24} << 20) ++complete;
      curl_easy_cleanup(easy);
    });
  for (auto& t : threads) t.join();
  CHECK(complete == 6);
  CHECK(transport.connections_opened() >= 1);
}

// OpenSSL reads ahead on kubetrail's connections (one read of the socket
// takes several records), and curl 7.88 asks SSL_pending(), which does not
// count records read ahead and not yet decrypted: without the I/O thread's
// drain_read_ahead(), every record after the first of a read waited in
// OpenSSL's buffer for the next bytes on the socket - here the body's end,
// three seconds later; on a quiet watch, minutes. (Failed with the drain
// taken out: the events arrived with the end, not with the burst.)
// 300 records sent in one write, then nothing for 3 s, then the end:
// checks that all 300 reach the caller within 1.5 s of the burst, through
// `proxy` ("" for none).
void check_burst_arrives_at_once(const std::string& proxy) {
  constexpr int kRecords = 300;
  TlsBurstServer server(kRecords, std::chrono::milliseconds(3000));
  kube::Transport transport;
  CURL* easy = server.easy("/watch");
  if (!proxy.empty()) curl_easy_setopt(easy, CURLOPT_PROXY, proxy.c_str());
  std::string body;
  int64_t all_arrived_ns = 0;
  auto out = transport.perform(
      easy,
      [&](std::string_view chunk, long) {
        body.append(chunk);
        if (all_arrived_ns == 0 && body.size() == size_t{kRecords} * 16)
          all_arrived_ns = std::chrono::steady_clock::now().time_since_epoch().count();
        return true;
      },
      nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OK);
  REQUIRE(body.size() == size_t{kRecords} * 16);
  for (int n = 0; n < kRecords; ++n) CHECK(body.compare(static_cast<size_t>(n) * 16, 16, event_piece(n)) == 0);
  REQUIRE(server.burst_sent_ns.load() > 0);
  REQUIRE(all_arrived_ns > 0);
  CHECK(all_arrived_ns - server.burst_sent_ns.load() < int64_t{1'500'000'000});
  // The connection read ahead: the transport counted the records it read.
  CHECK(transport.tls_records_read() >= kRecords / 2);
}

TEST_CASE("transport: TLS records read ahead together reach the caller at once, not with the next bytes") {
  check_burst_arrives_at_once("");
}

// Through an HTTP proxy (CONNECT), as a kubeconfig's proxy-url or
// HTTPS_PROXY makes it: the socket curl reads is the proxy's, and the
// records still reach the caller with the burst.
TEST_CASE("transport: TLS records read ahead through a CONNECT proxy reach the caller at once") {
  ConnectProxy proxy;
  check_burst_arrives_at_once("http://127.0.0.1:" + std::to_string(proxy.port));
  CHECK(proxy.tunnels == 1);
}

// curl's own timeouts run on its timer, which the I/O thread keeps since
// it drives curl's socket interface (no call into curl comes while the
// socket is silent but the timer's): a transfer past CURLOPT_TIMEOUT_MS
// ends then, not when the server next writes.
TEST_CASE("transport: a transfer's timeout ends it while the server is silent") {
  TlsBurstServer server(3, std::chrono::milliseconds(5000));
  kube::Transport transport;
  CURL* easy = server.easy("/watch");
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 700L);
  std::string body;
  auto start = std::chrono::steady_clock::now();
  auto out = transport.perform(
      easy,
      [&](std::string_view chunk, long) {
        body.append(chunk);
        return true;
      },
      nullptr);
  auto took = std::chrono::steady_clock::now() - start;
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OPERATION_TIMEDOUT);
  CHECK(body == event_piece(0) + event_piece(1) + event_piece(2));
  CHECK(took < std::chrono::milliseconds(3000));
}

// A transfer paused with records read ahead: curl takes none of them while
// it is paused, so the drain stops (it must not spin), and the resume has
// to take them without new bytes on the socket - the body's end here is
// already in OpenSSL's buffer when the caller catches up.
TEST_CASE("transport: a TLS transfer paused with records read ahead resumes and ends") {
  constexpr int kRecords = 640;  // 16,000 bytes each: ~10 MB, past kPauseBytes
  auto payload = [](int i) {
    std::string p(16000, '\0');
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>((static_cast<size_t>(i) * 16000 + k) % 251);
    return p;
  };
  TlsBurstServer server(kRecords, std::chrono::milliseconds(0), payload);
  kube::Transport transport;
  CURL* easy = server.easy("/big");
  FallingBehind reader{transport};
  auto out = transport.perform(
      easy, [&](std::string_view chunk, long) { return reader.read(chunk); }, nullptr);
  curl_easy_cleanup(easy);
  CHECK(out.code == CURLE_OK);
  CHECK(reader.got == size_t{kRecords} * 16000);
  CHECK(reader.wrong == 0);
  CHECK(transport.pauses() >= 1);
}

// Issue 13: every parser of untrusted bytes has bounds. A whole body (a
// list page) over 64 MiB used to be cut silently and then reported as "not
// JSON"; now the transfer stops with an error that says why.
TEST_CASE("client: a response body over 64 MiB is refused with an error saying so") {
  test::HttpReceiver rx;
  rx.script({test::HttpReceiver::Reply(200, std::string((size_t{64} << 20) + 1000, 'x'))});
  kubetrail::kube::Connection connection;
  connection.server = rx.url("");
  kubetrail::kube::Client client(connection);
  auto r = client.get("/api/v1/pods");
  CHECK(r.status == 0);
  CHECK(r.error.find("larger than 64 MiB") != std::string::npos);
  CHECK(r.body.empty());
}

// Connection::compress decides whether the client offers Accept-Encoding
// (choose_compression() sets it from [cluster] compression). Failed before
// for compress = false: the header was always sent.
// A 200 whose body was cut short (the connection closed, or the timeout
// struck, before Content-Length bytes came) was handed back as a 200 with
// half a body and the transport's error beside it; every caller looks at
// the status, so discovery then said "the answer is not JSON" and a list
// page "not JSON" - not what happened. Now it is no answer (status 0) with
// curl's reason, which callers retry as an outage. (Failed before: status
// 200, and a body of 9 bytes.)
TEST_CASE("client: a 200 whose body is cut short is no answer, and the error says why") {
  LoopbackListener listener(4);
  // Each connection: the request read, then a head promising 1000 bytes,
  // 9 of them, and the close.
  std::thread server([&listener] {
    for (int served = 0; served < 2; ++served) {
      int fd = accept(listener.fd, nullptr, nullptr);
      if (fd < 0) return;
      read_head([fd](char* p, size_t n) { return recv(fd, p, n, 0); });
      std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":";
      send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
      close(fd);
    }
  });
  kubetrail::kube::Connection connection;
  connection.server = "http://127.0.0.1:" + std::to_string(listener.port);
  kubetrail::kube::Client client(connection);
  auto r = client.get("/api");
  CHECK(r.status == 0);
  CHECK(r.body.empty());
  CHECK(r.error.find("partial") != std::string::npos);  // curl's CURLE_PARTIAL_FILE
  // The same through discovery: an outage named for what it was.
  std::string why;
  try {
    kubetrail::kube::Discovery::fetch(client);
  } catch (const std::exception& e) {
    why = e.what();
  }
  CHECK(why.find("GET /api failed") != std::string::npos);
  CHECK(why.find("partial") != std::string::npos);
  CHECK(why.find("not JSON") == std::string::npos);
  listener.wake();
  server.join();
}

TEST_CASE("client: Accept-Encoding is offered only when the connection asks for compression") {
  for (bool compress : {true, false}) {
    CAPTURE(compress);
    test::HttpReceiver rx;
    kubetrail::kube::Connection connection;
    connection.server = rx.url("");
    connection.compress = compress;
    kubetrail::kube::Client client(connection);
    auto r = client.get("/api/v1/pods");
    CHECK(r.status == 200);
    auto requests = rx.requests();
    REQUIRE(requests.size() == 1);
    CHECK((requests[0].header("Accept-Encoding").find("gzip") != std::string::npos) == compress);
  }
}

namespace {
// The names of this process's threads, as top -H and perf show them.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.push_back(name);
  }
  return names;
}
}  // namespace

// Every thread was "kubetrail" (or the test binary's name): a profile had
// to be read by each thread's root frame. Failed before: no kt-io thread.
TEST_CASE("threads carry names: the transport's I/O thread, and a long name cut to Linux's 15 bytes") {
  {
    kube::Transport transport;
    bool named = false;  // the thread names itself once it runs: wait up to 2 s
    for (int i = 0; i < 200 && !named; ++i) {
      auto names = thread_names();
      named = std::find(names.begin(), names.end(), "kt-io") != names.end();
      if (!named) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(named);
  }
  std::string seen;
  std::thread([&] {
    name_this_thread("kt-w:deployments.apps in every namespace");
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    seen = buf;
  }).join();
  CHECK(seen == "kt-w:deployment");  // 15 bytes
}
