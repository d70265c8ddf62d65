// A periodic worker: runs `work` every `period` on a thread of its own,
// waiting on a condition variable in between, so that stop() (or the
// destructor) ends it at once rather than at the next poll. For the
// daemon's background duties (re-discovery, ...): each one an object with
// a lifetime, not a flag checked in a loop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kubetrail {

class Periodic {
 public:
  // The first run is one period after construction. `work` must not throw
  // (catch and log inside it: a periodic duty that fails tries again next
  // period).
  Periodic(std::chrono::milliseconds period, std::function<void()> work)
      : period_(period), work_(std::move(work)), thread_([this] { loop(); }) {}
  ~Periodic() { stop(); }
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  // Wakes the thread and waits for it: a run in progress finishes first.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (cv_.wait_for(lock, period_, [this] { return stopping_; })) return;
      lock.unlock();
      work_();
      lock.lock();
    }
  }

  const std::chrono::milliseconds period_;
  const std::function<void()> work_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // under mu_
  std::thread thread_;     // last: starts after everything it uses exists
};

}  // namespace kubetrail
