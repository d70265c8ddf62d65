// Periodic: the daemon's background duties run each period and stop at
// once. Before, re-discovery slept in 100 ms steps and checked a flag.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/periodic.hpp"

using namespace std::chrono_literals;

TEST_CASE("periodic: runs once per period, not before the first period") {
  std::atomic<int> runs{0};
  {
    kubetrail::Periodic p(30ms, [&] { ++runs; });
    std::this_thread::sleep_for(10ms);
    CHECK(runs.load() == 0);
    for (int i = 0; i < 200 && runs.load() < 3; ++i) std::this_thread::sleep_for(10ms);
  }
  CHECK(runs.load() >= 3);
}

TEST_CASE("periodic: stopping a worker with an hour's period returns at once") {
  std::atomic<int> runs{0};
  auto started = std::chrono::steady_clock::now();
  {
    kubetrail::Periodic p(std::chrono::hours(1), [&] { ++runs; });
  }
  CHECK(std::chrono::steady_clock::now() - started < 1s);
  CHECK(runs.load() == 0);
}
