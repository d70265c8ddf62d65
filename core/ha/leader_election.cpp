#include "ha/leader_election.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include "common/error.hpp"
#include "common/json_depth.hpp"

namespace kubetrail::ha {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A MicroTime as the API server writes it: RFC 3339, six fractional digits.
std::string now_micro() {
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the format could print: -Wformat-truncation
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us % 1000000));
  return buf;
}

// The part of a Lease that says whether its holder is alive: spec and
// annotations, as text (any change restarts the expiry clock).
std::string record_text(const json& lease) {
  json record = {{"s", lease.value("spec", json::object())},
                 {"a", lease.value("metadata", json::object()).value("annotations", json::object())}};
  return record.dump();
}

// A Lease is bytes from the API server, and its annotations are written
// by anyone who may write the Lease: refused nested deeper than any Lease
// is before nlohmann copies and dumps it (both recurse once a level).
json parse_bounded(const std::string& text, const std::string& what) {
  if (json_nested_deeper_than(text)) throw Error(what + ": " + nested_deeper_than());
  return json::parse(text);
}

std::string random_hex(size_t n) {
  std::random_device rd;
  std::string s;
  for (size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

}  // namespace

std::string default_identity() {
  std::string base;
  if (const char* pod = std::getenv("POD_NAME"); pod && *pod) base = pod;
  if (base.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) == 0) base = host;
  }
  if (base.empty()) base = "kubetrail";
  return base + "_" + random_hex(8);
}

LeaderElector::LeaderElector(kube::Client& client, LeaseSettings settings) : client_(client), s_(std::move(settings)) {
  if (s_.identity.empty()) s_.identity = default_identity();
}

std::string LeaderElector::leases_path() const {
  return "/apis/coordination.k8s.io/v1/namespaces/" + s_.lease_namespace + "/leases";
}

bool LeaderElector::leading() const {
  std::lock_guard lock(mu_);
  return holding_ && Clock::now() - renewed_ < s_.renew_deadline;
}

std::string LeaderElector::holder() const {
  std::lock_guard lock(mu_);
  return observed_holder_;
}

void LeaderElector::publish(Progress progress) {
  std::lock_guard lock(mu_);
  published_ = std::move(progress);
}

LeaderElector::Progress LeaderElector::observed_progress() const {
  std::lock_guard lock(mu_);
  return observed_progress_;
}

namespace {
// A snapshot time only moves forward: an earlier one never replaces it.
void keep_later(LeaderElector::SnapshotTimes& times, const std::string& handler, int64_t at) {
  int64_t& kept = times[handler];
  kept = std::max(kept, at);
}
}  // namespace

void LeaderElector::snapshot_taken(const std::string& handler, int64_t at, bool replace) {
  std::lock_guard lock(mu_);
  if (replace)
    published_snapshots_[handler] = at;
  else
    keep_later(published_snapshots_, handler, at);
}

LeaderElector::SnapshotTimes LeaderElector::observed_snapshots() const {
  std::lock_guard lock(mu_);
  return observed_snapshots_;
}

int64_t LeaderElector::observed_snapshot(const std::string& handler) const {
  std::lock_guard lock(mu_);
  auto it = observed_snapshots_.find(handler);
  return it == observed_snapshots_.end() ? 0 : it->second;
}

std::string LeaderElector::lease_json(const std::string& holder, int64_t duration_s, const std::string& acquire_time,
                                      int32_t transitions, const std::string& resource_version) const {
  json annotations = observed_raw_.empty() ? json::object() : json::parse(observed_raw_).value("a", json::object());
  {
    std::lock_guard lock(mu_);
    annotations[kAnnotationProgress] = json(published_).dump();
    if (!published_snapshots_.empty()) annotations[kAnnotationSnapshots] = json(published_snapshots_).dump();
  }
  json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata", {{"name", s_.name}, {"namespace", s_.lease_namespace}, {"annotations", annotations}}},
                {"spec",
                 {{"holderIdentity", holder},
                  {"leaseDurationSeconds", duration_s},
                  {"acquireTime", acquire_time},
                  {"renewTime", now_micro()},
                  {"leaseTransitions", transitions}}}};
  if (!resource_version.empty()) lease["metadata"]["resourceVersion"] = resource_version;
  return lease.dump();
}

// Writes the Lease (POST to create, PUT to update) and, on success, takes
// the answer as the observed record. Called with step_mu_ held, not mu_.
bool LeaderElector::write(const std::string& method, const std::string& path, bool leading_next) {
  std::string holder = leading_next ? s_.identity : std::string();
  auto secs =
      leading_next
          ? std::chrono::duration_cast<std::chrono::seconds>(s_.lease_duration + std::chrono::milliseconds(999)).count()
          : 1;
  bool same_holder = !observed_holder_.empty() && observed_holder_ == s_.identity;
  std::string acquire = same_holder && leading_next ? observed_acquire_time_ : now_micro();
  int32_t transitions = same_holder || !leading_next ? observed_transitions_ : observed_transitions_ + 1;
  auto r =
      client_.send(method, path, lease_json(holder, secs, acquire, transitions, method == "PUT" ? observed_rv_ : ""));
  if (r.status != 200 && r.status != 201) {
    if (r.status == 409)
      spdlog::debug("lease {}/{}: another replica wrote it first", s_.lease_namespace, s_.name);
    else
      spdlog::warn("lease {}/{}: {} failed: {}", s_.lease_namespace, s_.name, method,
                   r.status ? "HTTP " + std::to_string(r.status) : r.error);
    return false;
  }
  try {
    auto doc = parse_bounded(r.body, "the answer");
    observed_rv_ = doc["metadata"].value("resourceVersion", "");
    {
      std::lock_guard lock(mu_);
      observed_holder_ = holder;
    }
    observed_acquire_time_ = acquire;
    observed_transitions_ = transitions;
    observed_raw_ = record_text(doc);
    observed_time_ = Clock::now();
  } catch (const std::exception& e) {  // json::exception, or the depth's Error
    spdlog::warn("lease {}/{}: unreadable answer to {}: {}", s_.lease_namespace, s_.name, method, e.what());
  }
  return true;
}

bool LeaderElector::step() {
  const std::string base = leases_path();
  const std::string path = base + "/" + s_.name;
  std::lock_guard step_lock(step_mu_);
  auto r = client_.get(path, 10000);
  auto now = Clock::now();
  bool was_holding = holding_;
  // The state other threads read changes under mu_ as well.
  auto set_holding = [&](bool holding, bool renewed) {
    std::lock_guard lock(mu_);
    holding_ = holding;
    if (renewed) renewed_ = now;
  };
  auto keep_or_lose = [&] {
    // A failed step: a leader stays one until its renew deadline passes.
    if (holding_ && now - renewed_ >= s_.renew_deadline) {
      set_holding(false, false);
      lost_ = true;
      spdlog::error("lease {}/{}: not renewed for {} ms (renew deadline): no longer the leader", s_.lease_namespace,
                    s_.name, s_.renew_deadline.count());
    }
    return holding_ && !lost_;
  };
  if (r.status == 404) {
    if (!write("POST", base, true)) return keep_or_lose();
    set_holding(true, true);
    spdlog::info("lease {}/{}: created it; leading as {}", s_.lease_namespace, s_.name, s_.identity);
    return true;
  }
  if (r.status != 200) {
    spdlog::warn("lease {}/{}: GET failed: {}", s_.lease_namespace, s_.name,
                 r.status ? "HTTP " + std::to_string(r.status) : r.error);
    return keep_or_lose();
  }
  int64_t duration_s = 0;
  try {
    auto doc = parse_bounded(r.body, "the Lease");
    auto spec = doc.value("spec", json::object());
    std::string raw_text = record_text(doc);
    observed_rv_ = doc["metadata"].value("resourceVersion", "");
    duration_s = spec.value("leaseDurationSeconds", int64_t{0});
    if (raw_text != observed_raw_) {
      observed_raw_ = std::move(raw_text);
      observed_time_ = now;
      {
        std::lock_guard lock(mu_);
        observed_holder_ = spec.value("holderIdentity", "");
      }
      observed_acquire_time_ = spec.value("acquireTime", "");
      observed_transitions_ = spec.value("leaseTransitions", 0);
      Progress progress;
      const json annotations = doc["metadata"].value("annotations", json::object());
      auto text = annotations.value(kAnnotationProgress, "");
      if (!text.empty()) {
        auto p = parse_bounded(text, "annotation " + std::string(kAnnotationProgress));
        for (auto it = p.begin(); it != p.end(); ++it)
          if (it->is_string()) progress[it.key()] = it->get<std::string>();
      }
      // Anyone who may write the Lease writes this, and it only advises,
      // unlike the progress: an unreadable one is warned about and left
      // out, as is a value that is not a whole number of seconds (that
      // handler's snapshot is then due by this replica's own record alone),
      // and the Lease is read as ever.
      SnapshotTimes snapshots;
      if (auto taken = annotations.value(kAnnotationSnapshots, ""); !taken.empty()) {
        try {
          auto p = parse_bounded(taken, "annotation " + std::string(kAnnotationSnapshots));
          if (!p.is_object()) throw Error("annotation " + std::string(kAnnotationSnapshots) + ": not a JSON object");
          for (const auto& [handler, at] : p.items())
            if (at.is_number_integer() && at.get<int64_t>() > 0) snapshots[handler] = at.get<int64_t>();
        } catch (const std::exception& e) {
          spdlog::warn("lease {}/{}: {}", s_.lease_namespace, s_.name, e.what());
        }
      }
      {
        std::lock_guard lock(mu_);
        observed_progress_ = std::move(progress);
        observed_snapshots_ = std::move(snapshots);
      }
      ++observed_gen_;
    }
  } catch (const std::exception& e) {  // json::exception, or the depth's Error
    spdlog::warn("lease {}/{}: unreadable Lease: {}", s_.lease_namespace, s_.name, e.what());
    return keep_or_lose();
  }
  bool ours = observed_holder_ == s_.identity;
  bool valid = !observed_holder_.empty() && now < observed_time_ + std::chrono::seconds(duration_s);
  if (valid && !ours) {
    if (was_holding) {
      set_holding(false, false);
      lost_ = true;
      spdlog::error("lease {}/{}: now held by {}: no longer the leader", s_.lease_namespace, s_.name, observed_holder_);
    }
    return false;
  }
  // Taking over: go on publishing the last leader's progress until ours
  // moves, so a third replica still knows what was delivered.
  if (!was_holding) {
    std::lock_guard lock(mu_);
    for (const auto& [stream, rv] : observed_progress_) published_.emplace(stream, rv);
    for (const auto& [handler, at] : observed_snapshots_) keep_later(published_snapshots_, handler, at);
  }
  if (!write("PUT", path, true)) return keep_or_lose();
  set_holding(true, true);
  if (!was_holding) spdlog::info("lease {}/{}: acquired; leading as {}", s_.lease_namespace, s_.name, s_.identity);
  return true;
}

void LeaderElector::release() {
  std::lock_guard step_lock(step_mu_);
  // Past the renew deadline another replica may hold it: leave it alone.
  if (!holding_ || lost_ || Clock::now() - renewed_ >= s_.renew_deadline) return;
  const std::string path = leases_path() + "/" + s_.name;
  if (write("PUT", path, false)) spdlog::info("lease {}/{}: released", s_.lease_namespace, s_.name);
  std::lock_guard lock(mu_);
  holding_ = false;
}

void LeaderElector::run(const std::atomic<bool>& stop) {
  std::mt19937 rng{std::random_device{}()};
  while (!stop.load()) {
    bool lead = step();
    // client-go: a leader renews every retry period; a candidate retries
    // with jitter (up to 1.2 periods more) so that candidates spread out.
    auto wait = s_.retry_period;
    if (!lead)
      wait +=
          std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(0, s_.retry_period.count() * 12 / 10)(rng));
    for (auto until = Clock::now() + wait; Clock::now() < until && !stop.load();)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (lost_) return;
  }
}

}  // namespace kubetrail::ha
