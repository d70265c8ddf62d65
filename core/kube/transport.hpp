// One libcurl multi handle, driven by one I/O thread, that every request of
// a Client goes through - so that, over HTTP/2, all watches, lists and
// discovery requests share one TCP+TLS connection as streams (kube-apiserver
// serves up to hundreds of streams per connection), instead of one connection
// per watch. Over HTTP/1.1 curl opens a connection per concurrent transfer
// and reuses idle ones, as before.
//
// The caller's thread keeps doing the work: perform() blocks, and the body
// arrives in the caller's `sink` on the caller's thread, so an informer's
// parse and diff never run on (or stall) the I/O thread. The I/O thread only
// moves bytes into a per-transfer buffer - or, for a body the caller wants
// whole (a list page: perform_whole()), straight into the caller's string,
// so that its bytes are copied once, not once more on the caller's thread - (what waits is handed over in one
// piece: the informer commits it in one transaction); when a consumer falls behind by
// more than kPauseBytes its transfer is paused (HTTP/2 flow control holds
// the server back for that stream alone) and resumed once drained.
//
// The I/O thread drives curl through its socket interface (it polls the
// sockets curl names, and tells curl which one is ready) and lets OpenSSL
// read ahead: a system call costs about 1 us on the paravirtualized VMs
// kubetrail is measured on, and curl 7.88 driven by curl_multi_perform()
// made four of them per TLS record (a poll to ask whether the socket is
// readable, a read of the record's 5-byte header, one of its body, and
// curl_multi_poll()), about two per watch event at 8.5 KB a Pod. See
// drain_read_ahead() for what read-ahead asks of the loop.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace kubetrail::kube {

class Transport {
 public:
  static constexpr size_t kPauseBytes = 8 << 20;
  // Bytes waiting for the caller are handed over in pieces of up to this
  // much (see on_write).
  static constexpr size_t kCoalesceBytes = 1 << 20;

  Transport();
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  struct Outcome {
    CURLcode code = CURLE_OK;
    long status = 0;               // HTTP status, 0 when none arrived
    bool stopped_by_sink = false;  // the sink returned false
    bool stopped = false;          // `stop` became true
    bool too_large = false;        // perform_whole(): the body passed its limit, and the transfer was stopped
  };
  // Runs `easy` (configured by the caller, except its write callback) on
  // the shared multi handle until it completes, the sink returns false, or
  // `stop` becomes true (noticed within 200 ms). The sink gets each piece of
  // the body with the HTTP status, on the calling thread.
  Outcome perform(CURL* easy, const std::function<bool(std::string_view, long)>& sink, const std::atomic<bool>* stop);
  // The same for a body wanted whole: the I/O thread appends it to `body`
  // as it arrives, keeping `room_after` bytes of capacity past its end (a
  // parser's padding), and the caller wakes once, when it is complete. A
  // body that would pass `limit` bytes stops the transfer (too_large).
  Outcome perform_whole(CURL* easy, std::string& body, size_t limit, size_t room_after, const std::atomic<bool>* stop);

  // Pieces' memory kept for reuse, per transfer: what can be queued before
  // it pauses, and one more being read by the caller.
  static constexpr size_t kMaxSpares = kPauseBytes / kCoalesceBytes + 1;

  // How bytes that arrived join the pieces waiting for the caller: to the
  // last one, up to kCoalesceBytes (grown to that at once when it must
  // grow), else as a new piece in the memory of the last of `spares`, when
  // given, taken from it (state_bench models the I/O thread with it).
  static void queue_piece(std::deque<std::string>& pieces, std::string_view bytes,
                          std::vector<std::string>* spares = nullptr);

  // Connections curl had to open so far (CURLINFO_NUM_CONNECTS summed).
  uint64_t connections_opened() const noexcept { return connections_.load(); }
  // Times a transfer was paused because its consumer fell behind.
  uint64_t pauses() const noexcept { return pauses_.load(); }
  // TLS records read on connections with read-ahead on (the I/O thread's
  // count, for tests).
  uint64_t tls_records_read() const noexcept { return tls_records_.load(std::memory_order_relaxed); }

  // OpenSSL's read buffer on kubetrail's connections: with read-ahead one
  // read of the socket takes up to this much, several 16 KiB records.
  static constexpr size_t kTlsReadBuffer = 64 << 10;

 private:
  struct Exchange;
  enum class Command { add, cancel, resume };
  void post(Command c, Exchange* ex);
  Outcome run(Exchange& ex, const std::function<bool(std::string_view, long)>* sink, const std::atomic<bool>* stop);
  void loop();
  static void finish(Exchange& ex, CURLcode code, bool cancelled);
  void run_commands(std::vector<Exchange*>& running);
  void collect_done(std::vector<Exchange*>& running);
  bool drain_read_ahead(const std::vector<Exchange*>& running);
  int poll_timeout_ms() const;
  static size_t on_write(char* p, size_t size, size_t n, void* ud);
  static int on_socket(CURL* easy, curl_socket_t s, int what, void* self, void* socket_data);
  static int on_timer(CURLM* multi, long timeout_ms, void* self);

  CURLM* multi_;
  int wake_fd_ = -1;  // an eventfd: post() and the destructor wake the I/O thread's poll
  // I/O thread only: the sockets curl wants watched (CURL_POLL_IN/OUT/INOUT),
  // and when curl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT) run.
  std::unordered_map<curl_socket_t, int> sockets_;
  std::chrono::steady_clock::time_point timer_{};
  bool timer_set_ = false;
  std::atomic<uint64_t> tls_records_{0};
  std::mutex mu_;
  std::vector<std::pair<Command, Exchange*>> commands_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> pauses_{0};
  std::thread io_;
};

}  // namespace kubetrail::kube
