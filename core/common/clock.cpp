#include "common/clock.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

namespace kubetrail {

std::string now_rfc3339() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace kubetrail

namespace kubetrail {

namespace {
class RealClock final : public Clock {
 public:
  time_point now() override { return std::chrono::steady_clock::now(); }
  void sleep(std::chrono::milliseconds d, const std::atomic<bool>& stop) override {
    for (auto until = now() + d; !stop.load() && now() < until;)
      std::this_thread::sleep_for(
          std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(50), until - now()));
  }
};
}  // namespace

Clock& Clock::real() {
  static RealClock clock;
  return clock;
}

std::chrono::milliseconds Backoff::next(Clock::time_point now, double random01) {
  if (called_ && now - last_ >= s_.reset_after) failures_ = 0;
  called_ = true;
  last_ = now;
  ++failures_;
  double base = static_cast<double>(s_.initial.count());
  for (uint32_t i = 1; i < failures_ && base < static_cast<double>(s_.max.count()); ++i) base *= 2;
  base = std::min(base, static_cast<double>(s_.max.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(base * (1.0 + s_.jitter * random01)));
}

}  // namespace kubetrail
