#include <doctest/doctest.h>

#include "common/metrics.hpp"

using kubetrail::MetricKind;
using kubetrail::Metrics;

TEST_CASE("metrics render in the Prometheus text format") {
  Metrics m;
  auto c = m.define(MetricKind::counter, "kubetrail_things_total", "things", {{"handler", "a\"b"}});
  auto g = m.define(MetricKind::gauge, "kubetrail_depth", "depth");
  auto h = m.define(MetricKind::histogram, "kubetrail_latency_seconds", "latency");
  REQUIRE(c >= 0);
  m.record(c, 2);
  m.record(c, -5);  // counters never go down
  m.record(g, 7);
  m.record(h, 0.003);
  m.record(h, 2);
  std::string text = m.render();
  CHECK(text.find("# TYPE kubetrail_things_total counter\nkubetrail_things_total{handler=\"a\\\"b\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("kubetrail_depth 7\n") != std::string::npos);
  CHECK(text.find("kubetrail_latency_seconds_bucket{le=\"0.005\"} 1\n") != std::string::npos);
  CHECK(text.find("kubetrail_latency_seconds_bucket{le=\"+Inf\"} 2\n") != std::string::npos);
  CHECK(text.find("kubetrail_latency_seconds_count 2\n") != std::string::npos);
  CHECK(m.define(MetricKind::counter, "kubetrail_things_total", "things", {{"handler", "a\"b"}}) == c);
  CHECK(m.define(MetricKind::counter, "9bad", "x") == -1);
  CHECK(m.define(MetricKind::counter, "bad-name", "x") == -1);
}
