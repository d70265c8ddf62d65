// Time: wall-clock time as Kubernetes writes it, and the steady clock the
// watch stage waits on, behind an interface so that tests run backoff
// schedules without sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kubetrail {

// Now as RFC 3339 UTC with milliseconds: "2026-11-23T10:00:00.123Z".
std::string now_rfc3339();
// `t` the same way. Called once per watch event: the date and time of day
// are formatted once per second per thread and reused (snprintf per event
// was ~0.5 us in perf).
std::string format_rfc3339(std::chrono::system_clock::time_point t);
// RFC 3339 (YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), as Kubernetes
// and observedAt write it) to unix milliseconds; nullopt when the text is
// not one.
std::optional<int64_t> rfc3339_to_ms(std::string_view text);
// Wall-clock now in unix milliseconds.
int64_t now_unix_ms();
// A point in time as a user writes it: a duration before `now_ms` ("45s",
// "30m", "2h", "7d"), a time of day ("14:00", "14:00:30": local time, the
// last such moment) or an RFC 3339 time. Throws kubetrail::Error naming
// `what` (the option or parameter it came from).
int64_t parse_when(const std::string& what, const std::string& text, int64_t now_ms);

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() = 0;
  // Waits for `d`, or less once `stop` is set (checked at least every 50 ms).
  virtual void sleep(std::chrono::milliseconds d, const std::atomic<bool>& stop) = 0;
  // The steady clock and real sleeps.
  static Clock& real();
};

// Exponential backoff with jitter, as client-go's reflector has it
// (wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)): each
// next() doubles the delay from `initial` up to `max`, jittered upwards by
// up to `jitter` of itself (never below the schedule: a server is never
// asked sooner than the schedule says); a call after `reset_after` without
// one starts over at `initial` - the previous attempt was healthy.
struct BackoffSettings {
  std::chrono::milliseconds initial{800}, max{30000};
  std::chrono::milliseconds reset_after{120000};
  double jitter = 0.25;
};

class Backoff {
 public:
  using Settings = BackoffSettings;
  Backoff() = default;
  explicit Backoff(Settings s) : s_(s) {}
  // The delay before the next attempt, at `now`; `random01` in [0, 1).
  std::chrono::milliseconds next(Clock::time_point now, double random01);
  uint32_t failures() const noexcept { return failures_; }
  const Settings& settings() const noexcept { return s_; }

 private:
  Settings s_;
  uint32_t failures_ = 0;
  bool called_ = false;
  Clock::time_point last_{};
};

}  // namespace kubetrail
