// A small Prometheus metrics registry: counters, gauges and histograms with
// fixed labels, rendered in the Prometheus text exposition format (0.0.4).
// Used by the core and, through the plugin ABI's metric services, by plugins.
//
// Thread-safe: define() and render() take a lock; record() is lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace kubetrail {

enum class MetricKind { counter, gauge, histogram };

class Metrics {
 public:
  using Id = int32_t;
  // labels: pre-rendered label pairs, e.g. {{"handler","audit"}}. Defining the
  // same name and labels twice returns the same id. Returns -1 on a name that
  // is not a valid metric name.
  Id define(MetricKind kind, std::string_view name, std::string_view help,
            std::vector<std::pair<std::string, std::string>> labels = {});
  void record(Id id, double value) noexcept;  // counter: add; gauge: set; histogram: observe
  double value(Id id) const noexcept;         // counter/gauge value, histogram sum
  std::string render() const;

  static bool valid_name(std::string_view name) noexcept;
  // A sample value as the text format writes it: shortest round-trip form, +Inf, -Inf, NaN.
  static std::string format_value(double v);

 private:
  struct Series {
    MetricKind kind;
    std::string name, help, labels;  // labels rendered: {a="b",c="d"} or ""
    std::atomic<double> value{0};    // counter/gauge; histogram sum
    std::atomic<uint64_t> count{0};  // histogram
    std::vector<std::atomic<uint64_t>> buckets;
    explicit Series(size_t nbuckets) : buckets(nbuckets) {}
  };
  // record() runs without the lock while define() may append: the vector's
  // capacity is reserved once so that it never reallocates.
  static constexpr size_t kMaxSeries = 4096;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Series>> series_ = [] {
    std::vector<std::unique_ptr<Series>> v;
    v.reserve(kMaxSeries);
    return v;
  }();
  std::atomic<size_t> size_{0};
};

}  // namespace kubetrail
