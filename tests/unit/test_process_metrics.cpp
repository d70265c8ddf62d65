// process_* metrics as every Prometheus client library exports them (issue
// 16, item 5): absent before 2026-12-04.
#include <doctest/doctest.h>

#include <unistd.h>

#include <ctime>
#include <string>

#include "common/process_metrics.hpp"

using kubetrail::process_metrics_text;

TEST_CASE("process metrics: read from /proc/PID/stat past a command name with spaces and parentheses") {
  // Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt
  // cminflt majflt cmajflt utime stime ... starttime vsize rss.
  std::string stat =
      "4242 (kube trail) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 1000 104857600 2560 "
      "18446744073709551615\n";
  auto text = process_metrics_text(stat, "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n", 12, 1048576, 100, 4096);
  CHECK(text.find("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 4\n") != std::string::npos);
  CHECK(text.find("process_open_fds 12\n") != std::string::npos);
  CHECK(text.find("process_max_fds 1048576\n") != std::string::npos);
  CHECK(text.find("process_virtual_memory_bytes 104857600\n") != std::string::npos);
  CHECK(text.find("process_resident_memory_bytes 10485760\n") != std::string::npos);
  CHECK(text.find("process_start_time_seconds 1700000010\n") != std::string::npos);
}

TEST_CASE("process metrics: unreadable input leaves families out rather than reporting zeros") {
  auto text = process_metrics_text("garbage", "", -1, -1, 100, 4096);
  CHECK(text.empty());
  text = process_metrics_text("1 (a) S 1 2", "btime x\n", 3, -1, 100, 4096);
  CHECK(text ==
        "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n"
        "process_open_fds 3\n");
}

TEST_CASE("process metrics: this process has every family, with plausible values") {
  auto text = process_metrics_text();
  for (const char* name :
       {"process_cpu_seconds_total ", "process_open_fds ", "process_max_fds ", "process_virtual_memory_bytes ",
        "process_resident_memory_bytes ", "process_start_time_seconds "}) {
    CAPTURE(name);
    auto at = text.find(std::string("\n") + name);
    REQUIRE(at != std::string::npos);
    double v = std::stod(text.substr(at + 1 + std::string(name).size()));
    CHECK(v >= 0);
  }
  auto at = text.find("\nprocess_start_time_seconds ");
  double start = std::stod(text.substr(at + 28));
  CHECK(start > 1.6e9);
  CHECK(start <= static_cast<double>(time(nullptr)) + 1);
}
