#include "ha/handover.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

namespace kubetrail::ha {

namespace {
bool to_u64(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

std::string stream_key(const model::ChangeSet& cs, bool per_namespace) {
  std::string key = cs.resource.qualified_name();
  if (per_namespace && cs.resource.namespaced) key += "/" + cs.object_namespace;
  return key;
}

bool covered(const std::string& rv, const std::string& through) {
  uint64_t a = 0, b = 0;
  return to_u64(rv, a) && to_u64(through, b) && a <= b;
}

void DeliveryProgress::begin(const model::ChangeSet& cs, int chains) {
  // An inventory item is no step of a watch stream: its resourceVersion is
  // the object's, older than what the stream has delivered through.
  if (cs.type == model::ChangeType::snapshot) return;
  std::lock_guard lock(mu_);
  std::string stream = key_(cs);
  if (auto it = by_id_.find(cs.id); it != by_id_.end()) {  // the same change set again: more chains
    streams_[it->second.first][it->second.second].chains += chains;
    return;
  }
  uint64_t seq = next_++;
  streams_[stream][seq] = Pending{cs.id, cs.resource_version, chains};
  by_id_[cs.id] = {stream, seq};
  advance(stream);
}

void DeliveryProgress::end(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  auto [stream, seq] = it->second;
  auto& p = streams_[stream][seq];
  if (--p.chains <= 0) advance(stream);
}

void DeliveryProgress::advance(const std::string& stream) {
  auto& pending = streams_[stream];
  while (!pending.empty() && pending.begin()->second.chains <= 0) {
    const Pending& done = pending.begin()->second;
    through_[stream] = done.rv;
    by_id_.erase(done.id);
    pending.erase(pending.begin());
  }
}

void DeliveryProgress::settle_all() {
  std::lock_guard lock(mu_);
  for (auto& [stream, pending] : streams_) {
    for (auto& [seq, p] : pending) p.chains = 0;
    advance(stream);
  }
}

void DeliveryProgress::seed(const Progress& progress) {
  std::lock_guard lock(mu_);
  for (const auto& [stream, rv] : progress)
    if (!through_.count(stream)) through_[stream] = rv;
}

Progress DeliveryProgress::delivered_through() const {
  std::lock_guard lock(mu_);
  return through_;
}

void HandoverBuffer::push(model::ChangeSet cs) {
  std::string stream = key_(cs);
  items_.emplace_back(std::move(stream), std::move(cs));
  if (items_.size() > capacity_) {
    ++dropped_;
    if ((dropped_ & (dropped_ - 1)) == 0)  // 1, 2, 4, 8...: loud but not a flood
      spdlog::warn(
          "follower: {} change set(s) the leader has not confirmed were dropped (buffer of {}); "
          "is the leader publishing its progress?",
          dropped_, capacity_);
    items_.pop_front();
  }
}

std::vector<model::ChangeSet> HandoverBuffer::take_covered(const Progress& leader) {
  std::vector<model::ChangeSet> delivered;
  std::deque<std::pair<std::string, model::ChangeSet>> keep;
  for (auto& item : items_) {
    auto it = leader.find(item.first);
    if (it != leader.end() && covered(item.second.resource_version, it->second))
      delivered.push_back(std::move(item.second));
    else
      keep.push_back(std::move(item));
  }
  items_ = std::move(keep);
  return delivered;
}

std::vector<model::ChangeSet> HandoverBuffer::take() {
  std::vector<model::ChangeSet> out;
  out.reserve(items_.size());
  for (auto& item : items_) out.push_back(std::move(item.second));
  items_.clear();
  return out;
}

}  // namespace kubetrail::ha
