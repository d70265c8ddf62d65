#include "common/clock.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <thread>

#include "common/error.hpp"

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

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t parse_when(const std::string& what, const std::string& text, int64_t now_ms) {
  if (auto t = rfc3339_to_ms(text)) return *t;
  // "14:00" or "14:00:30": that time of day, local time, the last time it
  // was (today, or yesterday when it is still to come today).
  if ((text.size() == 5 || text.size() == 8) && text[2] == ':' && (text.size() == 5 || text[5] == ':')) {
    auto two = [&](size_t at) {
      return std::isdigit(static_cast<unsigned char>(text[at])) &&
                     std::isdigit(static_cast<unsigned char>(text[at + 1]))
                 ? (text[at] - '0') * 10 + (text[at + 1] - '0')
                 : -1;
    };
    int h = two(0), m = two(3), s = text.size() == 8 ? two(6) : 0;
    if (h >= 0 && h < 24 && m >= 0 && m < 60 && s >= 0 && s < 60) {
      std::time_t now_s = static_cast<std::time_t>(now_ms / 1000);
      std::tm local{};
      localtime_r(&now_s, &local);
      local.tm_hour = h;
      local.tm_min = m;
      local.tm_sec = s;
      local.tm_isdst = -1;
      int64_t at = static_cast<int64_t>(std::mktime(&local)) * 1000;
      if (at > now_ms) at -= 86400 * 1000;
      return at;
    }
  }
  static const std::map<char, int64_t> unit = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
  if (text.size() >= 2 && unit.count(text.back())) {
    int64_t n = 0;
    bool digits = true;
    for (size_t i = 0; i + 1 < text.size() && digits; ++i) {
      if (text[i] < '0' || text[i] > '9' || n > (INT64_MAX / 86400000 - 9) / 10) digits = false;
      if (digits) n = n * 10 + (text[i] - '0');
    }
    if (digits) return now_ms - n * unit.at(text.back());
  }
  throw Error(what + " \"" + text +
              "\": expected a duration before now (30s, 30m, 2h, 7d), a time of day (14:00, local time) or an RFC 3339 "
              "time");
}

std::optional<int64_t> rfc3339_to_ms(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]
  auto digits = [&](size_t at, size_t n, int& out) {
    if (at + n > t.size()) return false;
    out = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, s;
  if (!digits(0, 4, y) || t.size() < 19 || t[4] != '-' || !digits(5, 2, mo) || t[7] != '-' || !digits(8, 2, d) ||
      (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !digits(11, 2, h) || t[13] != ':' || !digits(14, 2, mi) ||
      t[16] != ':' || !digits(17, 2, s))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  size_t i = 19;
  int64_t ms = 0;
  if (i < t.size() && t[i] == '.') {
    size_t n = 0;
    for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, ++n)
      if (n < 3) ms = ms * 10 + (t[i] - '0');
    if (n == 0) return std::nullopt;
    for (; n < 3; ++n) ms *= 10;
  }
  int64_t offset_s = 0;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
    ++i;
  } else if (i < t.size() && (t[i] == '+' || t[i] == '-')) {
    int oh, om;
    if (!digits(i + 1, 2, oh) || i + 3 >= t.size() || t[i + 3] != ':' || !digits(i + 4, 2, om)) return std::nullopt;
    offset_s = (t[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  using namespace std::chrono;
  auto days = sys_days(year_month_day(year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))));
  int64_t secs = duration_cast<seconds>(days.time_since_epoch()).count() + h * 3600 + mi * 60 + s - offset_s;
  return secs * 1000 + ms;
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
