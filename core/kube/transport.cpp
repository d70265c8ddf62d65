#include "kube/transport.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/thread_name.hpp"

namespace kubetrail::kube {

// State shared by the caller's thread and the I/O thread; `mu` guards all
// but `easy`, which only the I/O thread touches while the transfer runs.
struct Transport::Exchange {
  Transport* owner = nullptr;
  CURL* easy = nullptr;
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

Transport::Transport() : multi_(curl_multi_init()) {
  // Multiplexing over HTTP/2 is libcurl's default for a multi handle; say so.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  io_ = std::thread([this] {
    name_this_thread("kt-io");
    loop();
  });
}

Transport::~Transport() {
  quit_ = true;
  curl_multi_wakeup(multi_);
  io_.join();
  curl_multi_cleanup(multi_);
}

void Transport::post(Command c, Exchange* ex) {
  {
    std::lock_guard lock(mu_);
    commands_.emplace_back(c, ex);
  }
  curl_multi_wakeup(multi_);
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

void Transport::loop() {
  std::vector<Exchange*> running;
  while (!quit_.load()) {
    std::vector<std::pair<Command, Exchange*>> commands;
    {
      std::lock_guard lock(mu_);
      commands.swap(commands_);
    }
    for (auto [c, ex] : commands) {
      switch (c) {
        case Command::add:
          if (curl_multi_add_handle(multi_, ex->easy) != CURLM_OK) {
            std::lock_guard lock(ex->mu);
            ex->done = true;
            ex->code = CURLE_FAILED_INIT;
            ex->cv.notify_one();
          } else {
            running.push_back(ex);
          }
          break;
        case Command::cancel:  // pointer compared only: ex may be gone if it finished meanwhile
          if (std::erase(running, ex)) {
            curl_multi_remove_handle(multi_, ex->easy);
            std::lock_guard lock(ex->mu);
            ex->done = true;
            ex->cancelled = true;
            ex->cv.notify_one();
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
    int still = 0;
    curl_multi_perform(multi_, &still);
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
      std::lock_guard lock(ex->mu);
      if (ex->status == 0) curl_easy_getinfo(ex->easy, CURLINFO_RESPONSE_CODE, &ex->status);
      ex->done = true;
      ex->code = code;
      ex->cv.notify_one();
    }
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
  for (Exchange* ex : running) {  // shutting down with transfers in flight
    curl_multi_remove_handle(multi_, ex->easy);
    std::lock_guard lock(ex->mu);
    ex->done = true;
    ex->cancelled = true;
    ex->cv.notify_one();
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
