#include "common/clock.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

namespace kubetrail {

std::string format_rfc3339(std::chrono::system_clock::time_point now) {
  using namespace std::chrono;
  const auto since = duration_cast<milliseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(since >= 0 ? since / 1000 : (since - 999) / 1000);
  const int ms = static_cast<int>(since - static_cast<int64_t>(t) * 1000);
  // "YYYY-MM-DDTHH:MM:SS" of the last second formatted on this thread.
  thread_local std::time_t cached_second = -1;
  thread_local char cached[32];
  thread_local size_t cached_len = 0;
  if (t != cached_second || cached_len == 0) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    int n = std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_len = n > 0 ? static_cast<size_t>(n) : 0;
    cached_second = t;
  }
  std::string out(cached, cached_len);
  out += '.';
  out += static_cast<char>('0' + ms / 100);
  out += static_cast<char>('0' + ms / 10 % 10);
  out += static_cast<char>('0' + ms % 10);
  out += 'Z';
  return out;
}

std::string now_rfc3339() { return format_rfc3339(std::chrono::system_clock::now()); }

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
