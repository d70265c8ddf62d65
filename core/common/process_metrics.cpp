#include "common/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/metrics.hpp"

namespace kubetrail {

namespace {

std::string read_all(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void family(std::string& out, const char* name, const char* type, const char* help, double value) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
         Metrics::format_value(value) + "\n";
}

bool number(std::string_view text, double& out) {
  long long v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return false;
  out = static_cast<double>(v);
  return true;
}

}  // namespace

std::string process_metrics_text(std::string_view stat, std::string_view proc_stat, long open_fds, long max_fds,
                                 long clock_ticks, long page_size) {
  std::string out;
  // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and
  // parentheses, so fields are counted from the last ')'. After it, field 3
  // (state) is the first; utime is 14, stime 15, starttime 22, vsize 23,
  // rss 24 (man 5 proc).
  std::vector<std::string_view> f;
  if (auto close = stat.rfind(')'); close != std::string_view::npos) {
    std::string_view rest = stat.substr(close + 1);
    while (!rest.empty()) {
      auto start = rest.find_first_not_of(" \n");
      if (start == std::string_view::npos) break;
      rest.remove_prefix(start);
      auto end = std::min(rest.find_first_of(" \n"), rest.size());
      f.push_back(rest.substr(0, end));
      rest.remove_prefix(end);
    }
  }
  auto field = [&](size_t n, double& v) { return n >= 3 && n - 3 < f.size() && number(f[n - 3], v); };
  double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  if (clock_ticks > 0 && field(14, utime) && field(15, stime))
    family(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
           (utime + stime) / static_cast<double>(clock_ticks));
  if (open_fds >= 0) family(out, "process_open_fds", "gauge", "Number of open file descriptors.", open_fds);
  if (max_fds > 0) family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds);
  if (field(23, vsize)) family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize);
  if (page_size > 0 && field(24, rss))
    family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           rss * static_cast<double>(page_size));
  // Start time: boot time (/proc/stat btime) plus starttime in clock ticks.
  double btime = 0;
  if (auto at = proc_stat.find("btime "); at != std::string_view::npos) {
    auto line = proc_stat.substr(at + 6);
    line = line.substr(0, std::min(line.find('\n'), line.size()));
    if (clock_ticks > 0 && number(line, btime) && field(22, start))
      family(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
             btime + start / static_cast<double>(clock_ticks));
  }
  return out;
}

std::string process_metrics_text() {
  long fds = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
       it.increment(ec))
    ++fds;
  if (ec) fds = -1;
  rlimit lim{};
  long max_fds =
      getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY ? static_cast<long>(lim.rlim_cur) : -1;
  return process_metrics_text(read_all("/proc/self/stat"), read_all("/proc/stat"), fds > 0 ? fds - 1 : fds, max_fds,
                              sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE));
}

}  // namespace kubetrail
