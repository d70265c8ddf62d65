// A scripted API server for the watch stage's unit tests: answers come from
// the test's functions, time from a fake clock whose sleeps only advance it.
// Nothing touches the network, libcurl or the real clock.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "kube/api.hpp"

namespace test {

class FakeClock final : public kubetrail::Clock {
 public:
  time_point now() override { return t_; }
  void sleep(std::chrono::milliseconds d, const std::atomic<bool>&) override {
    sleeps.push_back(d);
    t_ += d;
    if (on_sleep) on_sleep();
  }
  void advance(std::chrono::milliseconds d) { t_ += d; }
  std::vector<std::chrono::milliseconds> sleeps;
  std::function<void()> on_sleep;

 private:
  time_point t_{};
};

class FakeApi final : public kubetrail::kube::Api {
 public:
  struct Call {
    std::string path;
    bool watch;
    std::chrono::steady_clock::time_point at;
  };
  explicit FakeApi(FakeClock& clock) : clock_(clock) {}
  std::function<kubetrail::kube::Response(const std::string& path)> on_get;
  // Returns the response; calls on_data with the body chunks it wants to send.
  std::function<kubetrail::kube::Response(const std::string& path,
                                          const std::function<bool(std::string_view)>& on_data)>
      on_stream;

  kubetrail::kube::Response get(std::string_view path, long, std::string_view, std::string*) override {
    calls.push_back({std::string(path), false, clock_.now()});
    return on_get(std::string(path));
  }
  kubetrail::kube::Response stream(std::string_view path, const std::function<bool(std::string_view)>& on_data,
                                   const std::atomic<bool>&, long) override {
    calls.push_back({std::string(path), true, clock_.now()});
    return on_stream(std::string(path), on_data);
  }
  size_t count(bool watch) const {
    size_t n = 0;
    for (const auto& c : calls) n += c.watch == watch;
    return n;
  }
  std::vector<Call> calls;

 private:
  FakeClock& clock_;
};

}  // namespace test
