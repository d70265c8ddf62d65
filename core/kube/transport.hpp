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
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
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

 private:
  struct Exchange;
  enum class Command { add, cancel, resume };
  void post(Command c, Exchange* ex);
  Outcome run(Exchange& ex, const std::function<bool(std::string_view, long)>* sink, const std::atomic<bool>* stop);
  void loop();
  static size_t on_write(char* p, size_t size, size_t n, void* ud);

  CURLM* multi_;
  std::mutex mu_;
  std::vector<std::pair<Command, Exchange*>> commands_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> pauses_{0};
  std::thread io_;
};

}  // namespace kubetrail::kube
