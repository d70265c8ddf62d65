#include "common/metrics.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <sstream>

namespace kubetrail {

namespace {
// Latency buckets in seconds: from 100 µs to 30 s.
constexpr std::array<double, 14> kBuckets{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,   0.1,    0.25,  0.5,    1,     5,    30};

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void atomic_add(std::atomic<double>& a, double v) noexcept {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}
}  // namespace

bool Metrics::valid_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

Metrics::Id Metrics::define(MetricKind kind, std::string_view name, std::string_view help,
                            std::vector<std::pair<std::string, std::string>> labels) {
  if (!valid_name(name)) return -1;
  std::string rendered;
  for (const auto& [k, v] : labels) {
    if (!valid_name(k)) return -1;
    rendered += (rendered.empty() ? "{" : ",") + k + "=\"" + escape_label(v) + "\"";
  }
  if (!rendered.empty()) rendered += "}";
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < series_.size(); ++i)
    if (series_[i]->name == name && series_[i]->labels == rendered) return series_[i]->kind == kind ? Id(i) : -1;
  if (series_.size() == kMaxSeries) return -1;
  auto& s = *series_.emplace_back(std::make_unique<Series>(kind == MetricKind::histogram ? kBuckets.size() : 0));
  s.kind = kind;
  s.name.assign(name);
  s.help.assign(help);
  s.labels = std::move(rendered);
  size_.store(series_.size(), std::memory_order_release);
  return Id(series_.size() - 1);
}

void Metrics::record(Id id, double v) noexcept {
  if (id < 0 || size_t(id) >= size_.load(std::memory_order_acquire)) return;
  Series& s = *series_[size_t(id)];
  switch (s.kind) {
    case MetricKind::counter:
      if (v > 0) atomic_add(s.value, v);  // counters never go down
      break;
    case MetricKind::gauge: s.value.store(v, std::memory_order_relaxed); break;
    case MetricKind::histogram:
      atomic_add(s.value, v);
      s.count.fetch_add(1, std::memory_order_relaxed);
      for (size_t i = 0; i < kBuckets.size(); ++i)
        if (v <= kBuckets[i]) s.buckets[i].fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

double Metrics::value(Id id) const noexcept {
  if (id < 0 || size_t(id) >= size_.load(std::memory_order_acquire)) return 0;
  return series_[size_t(id)]->value.load(std::memory_order_relaxed);
}

std::string Metrics::format_value(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that round-trips
  return std::string(buf, end);
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  // Group series by name: HELP and TYPE once per metric family.
  std::map<std::string, std::vector<const Series*>> families;
  for (const auto& s : series_) families[s->name].push_back(s.get());
  std::string out;
  for (const auto& [name, list] : families) {
    const Series& first = *list.front();
    out += "# HELP " + name + " " + first.help + "\n";
    out += "# TYPE " + name + " " +
           (first.kind == MetricKind::counter ? "counter"
            : first.kind == MetricKind::gauge ? "gauge"
                                              : "histogram") +
           "\n";
    for (const Series* s : list) {
      if (s->kind != MetricKind::histogram) {
        out += name + s->labels + " " + Metrics::format_value(s->value.load()) + "\n";
        continue;
      }
      std::string inner = s->labels.empty() ? "" : s->labels.substr(1, s->labels.size() - 2) + ",";
      for (size_t i = 0; i < kBuckets.size(); ++i)
        out += name + "_bucket{" + inner + "le=\"" + Metrics::format_value(kBuckets[i]) + "\"} " +
               std::to_string(s->buckets[i].load()) + "\n";
      out += name + "_bucket{" + inner + "le=\"+Inf\"} " + std::to_string(s->count.load()) + "\n";
      out += name + "_sum" + s->labels + " " + Metrics::format_value(s->value.load()) + "\n";
      out += name + "_count" + s->labels + " " + std::to_string(s->count.load()) + "\n";
    }
  }
  return out;
}

}  // namespace kubetrail
