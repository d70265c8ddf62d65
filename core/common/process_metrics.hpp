// The process_* metrics every Prometheus client library exports (CPU, memory,
// file descriptors, start time), read from /proc at each scrape, so that
// dashboards and alerts written for any exporter work on kubetrail too.
#pragma once

#include <string>
#include <string_view>

namespace kubetrail {

// The families in the text exposition format (0.0.4), for /proc/self.
std::string process_metrics_text();

// The same from given /proc contents (tests): `stat` is /proc/PID/stat,
// `proc_stat` /proc/stat (for btime), `open_fds` the entries of
// /proc/PID/fd, `max_fds` RLIMIT_NOFILE's soft limit. Fields that cannot be
// read are left out rather than reported as 0.
std::string process_metrics_text(std::string_view stat, std::string_view proc_stat, long open_fds, long max_fds,
                                 long clock_ticks, long page_size);

}  // namespace kubetrail
