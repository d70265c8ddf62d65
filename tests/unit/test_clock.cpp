#include <doctest/doctest.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include "common/clock.hpp"

using namespace std::chrono;
using kubetrail::format_rfc3339;

namespace {
system_clock::time_point at_ms(int64_t ms) { return system_clock::time_point(milliseconds(ms)); }
}  // namespace

// The date and time of day are cached per second: a cache that missed the
// change of second (or of day) would write the last second again.
TEST_CASE("format_rfc3339 writes milliseconds and follows each change of second, day and year") {
  CHECK(format_rfc3339(at_ms(1700000000999)) == "2023-11-14T22:13:20.999Z");
  CHECK(format_rfc3339(at_ms(1700000001000)) == "2023-11-14T22:13:21.000Z");
  CHECK(format_rfc3339(at_ms(1700000001042)) == "2023-11-14T22:13:21.042Z");
  CHECK(format_rfc3339(at_ms(1704067199999)) == "2023-12-31T23:59:59.999Z");
  CHECK(format_rfc3339(at_ms(1704067200000)) == "2024-01-01T00:00:00.000Z");
  CHECK(format_rfc3339(at_ms(1700000001007)) == "2023-11-14T22:13:21.007Z");  // back in time, too
  CHECK(format_rfc3339(at_ms(0)) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339(at_ms(-1)) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("now_rfc3339 is now, in the shape Kubernetes writes, on any thread") {
  static const std::regex shape(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  std::string before = format_rfc3339(time_point_cast<seconds>(system_clock::now()));
  std::string now = kubetrail::now_rfc3339();
  CHECK(std::regex_match(now, shape));
  CHECK(now.compare(0, 19, before, 0, 19) >= 0);
  std::string other;
  std::thread([&] { other = kubetrail::now_rfc3339(); }).join();
  CHECK(std::regex_match(other, shape));
  CHECK(other >= now);
}
