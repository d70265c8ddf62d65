#include "kube/transport.hpp"

#include <openssl/ssl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "common/thread_name.hpp"

namespace kubetrail::kube {

// State shared by the caller's thread and the I/O thread; `mu` guards all
// but `easy`, which only the I/O thread touches while the transfer runs.
struct Transport::Exchange {
  Transport* owner = nullptr;
  CURL* easy = nullptr;
  // The socket curl last named for this transfer (on_socket), or none; the
  // I/O thread's alone.
  curl_socket_t socket = CURL_SOCKET_BAD;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> chunks;
  // Pieces the caller is done with, their memory kept for the next ones
  // (Transport::queue_piece); at most kMaxSpares, freed with the exchange.
  std::vector<std::string> spares;
  // perform_whole(): where the body goes, on the I/O thread; the caller
  // reads it only once `done` is set (under `mu`).
  std::string* body = nullptr;
  size_t body_limit = 0;
  size_t body_room = 0;
  bool too_large = false;
  size_t buffered = 0;
  long status = 0;
  bool paused = false;
  bool resume_asked = false;
  bool done = false;
  bool cancelled = false;
  CURLcode code = CURLE_OK;
};

namespace {

// Called by curl with each new connection's SSL_CTX (OpenSSL builds only):
// a read buffer large enough for several records. It is only the most a
// read may take; read-ahead itself is switched on per connection by the I/O
// thread (drain_read_ahead), on the one SSL it watches.
CURLcode size_tls_read_buffer(CURL*, void* ssl_ctx, void*) {
  SSL_CTX_set_default_read_buffer_len(static_cast<SSL_CTX*>(ssl_ctx), Transport::kTlsReadBuffer);
  return CURLE_OK;
}

// OpenSSL reports each record header it reads (SSL3_RT_HEADER); counting
// them tells the I/O thread whether curl consumed a buffered record.
void count_tls_record(int write_p, int, int content_type, const void*, size_t, SSL*, void* counter) {
  if (write_p == 0 && content_type == SSL3_RT_HEADER)
    static_cast<std::atomic<uint64_t>*>(counter)->fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

Transport::Transport() : multi_(curl_multi_init()), wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (wake_fd_ < 0) {
    std::string why = std::strerror(errno);
    curl_multi_cleanup(multi_);  // no destructor runs for a constructor that throws
    throw std::runtime_error("transport: eventfd: " + why);
  }
  // Multiplexing over HTTP/2 is libcurl's default for a multi handle; say so.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Transport::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Transport::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  io_ = std::thread([this] {
    name_this_thread("kt-io");
    loop();
  });
}

Transport::~Transport() {
  quit_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  io_.join();
  curl_multi_cleanup(multi_);
  close(wake_fd_);
}

void Transport::post(Command c, Exchange* ex) {
  {
    std::lock_guard lock(mu_);
    commands_.emplace_back(c, ex);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);  // only fails when the counter is full: woken anyway
}

int Transport::on_socket(CURL* easy, curl_socket_t s, int what, void* self, void*) {
  auto* t = static_cast<Transport*>(self);
  if (what == CURL_POLL_REMOVE)
    t->sockets_.erase(s);
  else
    t->sockets_[s] = what;
  // The transfer it is named for, when it is one of ours (curl names
  // connections it closes on its own with a handle of its own).
  Exchange* ex = nullptr;
  if (easy != nullptr && curl_easy_getinfo(easy, CURLINFO_PRIVATE, &ex) == CURLE_OK && ex != nullptr && ex->owner == t)
    ex->socket = what == CURL_POLL_REMOVE ? CURL_SOCKET_BAD : s;
  return 0;
}

int Transport::on_timer(CURLM*, long timeout_ms, void* self) {
  auto* t = static_cast<Transport*>(self);
  t->timer_set_ = timeout_ms >= 0;
  if (t->timer_set_) t->timer_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  return 0;
}

int Transport::poll_timeout_ms() const {
  constexpr int kMaxWaitMs = 1000;
  if (!timer_set_) return kMaxWaitMs;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(timer_ - std::chrono::steady_clock::now()).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, kMaxWaitMs));
}

// On the I/O thread: keep the bytes for the caller, or pause when it is far
// behind (curl hands the same bytes again after the resume).
size_t Transport::on_write(char* p, size_t size, size_t n, void* ud) {
  auto* ex = static_cast<Exchange*>(ud);
  size_t len = size * n;
  std::lock_guard lock(ex->mu);
  if (ex->status == 0) curl_easy_getinfo(ex->easy, CURLINFO_RESPONSE_CODE, &ex->status);
  if (std::string* body = ex->body) {  // wanted whole: no piece, no wake-up until it is done
    if (len > ex->body_limit - body->size()) {
      ex->too_large = true;
      return 0;  // anything but len: curl stops the transfer with CURLE_WRITE_ERROR
    }
    // Grown geometrically with the room kept after it, so the caller can
    // parse it where it is.
    if (size_t need = body->size() + len + ex->body_room; body->capacity() < need)
      body->reserve(std::max(2 * body->capacity(), need));
    body->append(p, len);
    return len;
  }
  if (ex->buffered >= kPauseBytes) {
    ex->paused = true;
    ++ex->owner->pauses_;
    return CURL_WRITEFUNC_PAUSE;
  }
  // What arrives while the caller is still busy with the last piece joins
  // the piece it will take next: the caller gets everything that waited in
  // one sink call. For a watch that is group commit across reads - every
  // event that arrived during one state-store commit goes into the next
  // commit together, however curl split them (state_bench: one transaction
  // per event costs three times a batched one) - with no timer and no added
  // latency when events come one at a time.
  queue_piece(ex->chunks, std::string_view(p, len), &ex->spares);
  ex->buffered += len;
  ex->cv.notify_one();
  return len;
}

void Transport::queue_piece(std::deque<std::string>& pieces, std::string_view bytes, std::vector<std::string>* spares) {
  if (!pieces.empty() && pieces.back().size() + bytes.size() <= kCoalesceBytes) {
    std::string& last = pieces.back();
    // A piece that must grow grows once, to the most it may hold: grown by
    // doubling, it copied what it held at each step - in a burst about a
    // copy more of every byte (perf: _M_mutate, 2.3% of the process at 100k
    // pods). Its memory comes back as a spare, so this is paid once.
    if (last.size() + bytes.size() > last.capacity()) last.reserve(kCoalesceBytes);
    last.append(bytes);
  } else if (spares && !spares->empty()) {
    pieces.push_back(std::move(spares->back()));
    spares->pop_back();
    pieces.back().assign(bytes);
  } else {
    pieces.emplace_back(bytes);
  }
}

// Marks `ex` done (its handle already out of the multi handle, or never
// in it) and wakes its caller, who may free it from then on. A transfer
// that ended by itself keeps its HTTP status; a cancelled one, what it had.
void Transport::finish(Exchange& ex, CURLcode code, bool cancelled) {
  std::lock_guard lock(ex.mu);
  if (!cancelled && ex.status == 0) curl_easy_getinfo(ex.easy, CURLINFO_RESPONSE_CODE, &ex.status);
  ex.done = true;
  ex.code = code;
  ex.cancelled = cancelled;
  ex.cv.notify_one();
}

void Transport::run_commands(std::vector<Exchange*>& running) {
  std::vector<std::pair<Command, Exchange*>> commands;
  {
    std::lock_guard lock(mu_);
    commands.swap(commands_);
  }
  for (auto [c, ex] : commands) {
    switch (c) {
      case Command::add:
        if (curl_multi_add_handle(multi_, ex->easy) != CURLM_OK) {
          finish(*ex, CURLE_FAILED_INIT, false);
        } else {
          running.push_back(ex);
        }
        break;
      case Command::cancel:  // pointer compared only: ex may be gone if it finished meanwhile
        if (std::erase(running, ex)) {
          curl_multi_remove_handle(multi_, ex->easy);
          finish(*ex, CURLE_OK, true);
        }
        break;
      case Command::resume: {
        // A transfer that finished meanwhile is gone (and so, maybe, is
        // its Exchange): only running ones are touched.
        if (std::find(running.begin(), running.end(), ex) == running.end()) break;
        bool resume = false;
        {
          std::lock_guard lock(ex->mu);
          resume = ex->paused && !ex->done;
          ex->paused = false;
          ex->resume_asked = false;
        }
        if (resume) curl_easy_pause(ex->easy, CURLPAUSE_CONT);
        break;
      }
    }
  }
}

void Transport::collect_done(std::vector<Exchange*>& running) {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    Exchange* ex = nullptr;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &ex);
    long opened = 0;
    curl_easy_getinfo(m->easy_handle, CURLINFO_NUM_CONNECTS, &opened);
    connections_ += static_cast<uint64_t>(opened);
    CURLcode code = m->data.result;
    curl_multi_remove_handle(multi_, m->easy_handle);
    std::erase(running, ex);
    finish(*ex, code, false);
  }
}

// With read-ahead, one read of the socket can leave whole TLS records in
// OpenSSL's buffer after curl has taken the first. curl 7.88 asks
// SSL_pending() whether more is buffered, which counts only a record
// already decrypted, so it would return with the rest unread, and the
// socket, drained, would never say readable for them: an event could wait
// for the next bytes from the server, minutes on a quiet watch. So after
// curl is done, every connection of a running transfer whose SSL holds
// unread bytes (SSL_has_pending) is handed to curl again as readable,
// for as long as curl takes another record from it each time; when it
// takes none (the rest is half a record, or the transfer is paused: its
// resume comes through here again), the socket is waited on as usual.
// Returns true when records may be left unread only because the rounds'
// bound was reached: the next poll must not wait.
bool Transport::drain_read_ahead(const std::vector<Exchange*>& running) {
  constexpr int kMaxRounds = 64;  // then poll once (without waiting) for the other sockets' turn
  bool more = false;
  std::vector<curl_socket_t> kick;
  // The SSL of a transfer, looked up again after each action: curl may
  // close the connection (and free its SSL) inside one.
  auto ssl_of = [](CURL* easy) -> SSL* {
    curl_tlssessioninfo* info = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || info == nullptr ||
        info->backend != CURLSSLBACKEND_OPENSSL)
      return nullptr;
    return static_cast<SSL*>(info->internals);
  };
  for (Exchange* ex : running) {
    SSL* ssl = ssl_of(ex->easy);
    if (ssl == nullptr || SSL_in_init(ssl)) continue;
    if (!SSL_get_read_ahead(ssl)) {
      // Only SSLs watched here read ahead; a connection through an HTTPS
      // proxy has a second one, which keeps OpenSSL's default.
      SSL_set_msg_callback(ssl, &count_tls_record);
      SSL_set_msg_callback_arg(ssl, &tls_records_);
      SSL_set_read_ahead(ssl, 1);
    }
    for (int round = 0; SSL_has_pending(ssl); ++round) {
      if (round == kMaxRounds) {
        more = true;
        break;
      }
      // The transfer's socket, where curl named it to this transfer (an
      // HTTP/2 stream that joined a connection may not have been told):
      // else every socket curl reads, one of which is this connection's.
      kick.clear();
      if (ex->socket != CURL_SOCKET_BAD) {
        kick.push_back(ex->socket);
      } else {
        for (auto [s, what] : sockets_)
          if (what & CURL_POLL_IN) kick.push_back(s);
      }
      uint64_t before = tls_records_.load(std::memory_order_relaxed);
      int still = 0;
      for (curl_socket_t s : kick) curl_multi_socket_action(multi_, s, CURL_CSELECT_IN, &still);
      if (tls_records_.load(std::memory_order_relaxed) == before) break;
      ssl = ssl_of(ex->easy);
      if (ssl == nullptr) break;
    }
  }
  return more;
}

void Transport::loop() {
  std::vector<Exchange*> running;
  std::vector<pollfd> fds;
  bool records_left = false;
  while (!quit_.load()) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    for (auto [s, what] : sockets_)
      fds.push_back(
          {s, static_cast<short>(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0)), 0});
    int ready = poll(fds.data(), fds.size(), records_left ? 0 : poll_timeout_ms());
    if (ready < 0 && errno != EINTR) spdlog::warn("transport: poll: {}", std::strerror(errno));
    if (fds[0].revents & POLLIN) {
      uint64_t count = 0;
      [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof count);
    }
    run_commands(running);
    int still = 0;
    for (size_t i = 1; i < fds.size() && ready > 0; ++i) {
      short r = fds[i].revents;
      if (r == 0) continue;
      int bits = ((r & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) | ((r & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((r & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
      // A socket an earlier action closed is unknown to curl now: it says
      // so (CURLM_BAD_SOCKET) and does nothing.
      curl_multi_socket_action(multi_, fds[i].fd, bits, &still);
    }
    if (timer_set_ && std::chrono::steady_clock::now() >= timer_) {
      timer_set_ = false;
      curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    records_left = drain_read_ahead(running);
    collect_done(running);
  }
  for (Exchange* ex : running) {  // shutting down with transfers in flight
    curl_multi_remove_handle(multi_, ex->easy);
    finish(*ex, CURLE_OK, true);
  }
}

Transport::Outcome Transport::perform(CURL* easy, const std::function<bool(std::string_view, long)>& sink,
                                      const std::atomic<bool>* stop) {
  Exchange ex;
  ex.easy = easy;
  return run(ex, &sink, stop);
}

Transport::Outcome Transport::perform_whole(CURL* easy, std::string& body, size_t limit, size_t room_after,
                                            const std::atomic<bool>* stop) {
  Exchange ex;
  ex.easy = easy;
  ex.body = &body;
  ex.body_limit = std::max(limit, body.size());
  ex.body_room = room_after;
  Outcome out = run(ex, nullptr, stop);
  out.too_large = ex.too_large;
  return out;
}

Transport::Outcome Transport::run(Exchange& ex, const std::function<bool(std::string_view, long)>* sink,
                                  const std::atomic<bool>* stop) {
  CURL* easy = ex.easy;
  ex.owner = this;
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transport::on_write);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, &ex);
  // Wait for an existing connection to say whether it multiplexes rather
  // than open a second one at once: the point of sharing.
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
  // Not built in (CURLE_NOT_BUILT_IN) where curl's TLS is not OpenSSL: no
  // read-ahead there (drain_read_ahead() looks for OpenSSL's SSL alone).
  curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, &size_tls_read_buffer);
  post(Command::add, &ex);
  Outcome out;
  bool cancel_sent = false;
  std::unique_lock lock(ex.mu);
  for (;;) {
    ex.cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return !ex.chunks.empty() || ex.done; });
    while (!ex.chunks.empty()) {
      std::string chunk = std::move(ex.chunks.front());
      ex.chunks.pop_front();
      ex.buffered -= chunk.size();
      long status = ex.status;
      lock.unlock();
      bool more = cancel_sent || (*sink)(chunk, status);
      lock.lock();
      // Its memory serves a next piece: a fresh allocation per piece cost
      // a page fault per 4 KiB touched (perf: clear_page on the I/O thread).
      // As many are kept as can be queued before the transfer pauses, so a
      // burst that queues several pieces allocates none of them twice.
      if (ex.spares.size() < kMaxSpares && chunk.capacity() > std::string().capacity()) {
        chunk.clear();
        ex.spares.push_back(std::move(chunk));
      }
      if (!more && !cancel_sent) {
        out.stopped_by_sink = true;
        cancel_sent = true;
        post(Command::cancel, &ex);
      }
    }
    if (ex.paused && !ex.resume_asked && ex.buffered < kPauseBytes / 2) {
      ex.resume_asked = true;
      post(Command::resume, &ex);
    }
    if (ex.done) break;
    if (stop && stop->load() && !cancel_sent) {
      out.stopped = true;
      cancel_sent = true;
      post(Command::cancel, &ex);
    }
  }
  out.status = ex.status;
  out.code = ex.cancelled ? (out.stopped_by_sink ? CURLE_WRITE_ERROR : CURLE_ABORTED_BY_CALLBACK) : ex.code;
  return out;
}

}  // namespace kubetrail::kube
