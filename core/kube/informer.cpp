#include "kube/informer.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <random>
#include <set>
#include <thread>

#include "common/clock.hpp"
#include "kube/discovery.hpp"
#include "kube/watch_stream.hpp"
#include "server/metrics.hpp"
#include "state/state_store.hpp"

namespace kubetrail::kube {

namespace dom = simdjson::dom;

namespace {

std::string url_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out.push_back(static_cast<char>(c));
    else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  return out;
}

std::mt19937& rng() {
  thread_local std::mt19937 r{std::random_device{}()};
  return r;
}

}  // namespace

Informer::Informer(Client& client, InformerOptions options, std::string cluster, diff::DiffOptions diff, Sink sink)
    : client_(client),
      opt_(std::move(options)),
      name_(opt_.type.qualified_name() + (opt_.namespace_scope.empty() ? "" : " in " + opt_.namespace_scope)),
      detector_(std::move(cluster), std::move(diff)),
      sink_(std::move(sink)),
      state_key_(opt_.type.qualified_name() + "/" + opt_.type.version +
                 (opt_.namespace_scope.empty() ? "" : "@" + opt_.namespace_scope)) {
  if (auto* m = opt_.metrics) {
    std::string r = opt_.type.qualified_name();
    for (auto t : {WatchEventType::added, WatchEventType::modified, WatchEventType::deleted, WatchEventType::bookmark,
                   WatchEventType::error})
      m_events_[static_cast<int>(t)] =
          m->define(server::MetricKind::counter, "kubetrail_watch_events_total", "watch events received",
                    {{"resource", r}, {"type", std::string(to_string(t))}});
    for (auto t : {diff::ChangeType::added, diff::ChangeType::modified, diff::ChangeType::deleted})
      m_change_sets_[static_cast<int>(t)] =
          m->define(server::MetricKind::counter, "kubetrail_change_sets_total", "change sets produced",
                    {{"resource", r}, {"type", std::string(diff::to_string(t))}});
    m_noise_ = m->define(server::MetricKind::counter, "kubetrail_noise_dropped_total",
                         "watch events dropped because only noise changed", {{"resource", r}});
    m_relists_ =
        m->define(server::MetricKind::counter, "kubetrail_relists_total", "lists after 410 Gone", {{"resource", r}});
    m_watches_ = m->define(server::MetricKind::counter, "kubetrail_watch_restarts_total",
                           "watches started after the first", {{"resource", r}});
  }
}

void Informer::record(int32_t id, double v) {
  if (opt_.metrics) opt_.metrics->record(id, v);
}

void Informer::emit(diff::ChangeSet&& cs) {
  record(m_change_sets_[static_cast<int>(cs.type)]);
  sink_(std::move(cs));
}

void Informer::touched(std::string_view ns, std::string_view name) {
  if (opt_.state) dirty_.insert(ObjectStore::key_of(ns, name));
}

void Informer::checkpoint(bool force) {
  if (!opt_.state) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_checkpoint_ < std::chrono::seconds(1)) return;
  if (!full_checkpoint_ && dirty_.empty() && !force) return;
  std::vector<std::pair<std::string, const StoredObject*>> upserts;
  std::vector<std::string> deletes;
  if (full_checkpoint_) {
    store_.for_each([&](const std::string& key, const StoredObject& o) { upserts.emplace_back(key, &o); });
    for (const auto& key : checkpointed_)
      if (!store_.find(key)) deletes.push_back(key);
  } else {
    for (const auto& key : dirty_) {
      if (const StoredObject* o = store_.find(key))
        upserts.emplace_back(key, o);
      else
        deletes.push_back(key);
    }
  }
  try {
    opt_.state->save(state_key_, upserts, deletes, rv_);
    for (const auto& [key, o] : upserts) checkpointed_.insert(key);
    for (const auto& key : deletes) checkpointed_.erase(key);
    dirty_.clear();
    full_checkpoint_ = false;
    last_checkpoint_ = now;
  } catch (const std::exception& e) {
    ++stats_.errors;
    spdlog::error("{}: checkpoint failed (will retry): {}", name_, e.what());
  }
}

std::string Informer::path(bool watch) const {
  const auto& t = opt_.type;
  std::string p = t.group.empty() ? "/api/" + t.version : "/apis/" + t.group + "/" + t.version;
  if (t.namespaced && !opt_.namespace_scope.empty()) p += "/namespaces/" + url_escape(opt_.namespace_scope);
  p += "/" + t.resource + "?";
  if (!opt_.label_selector.empty()) p += "labelSelector=" + url_escape(opt_.label_selector) + "&";
  if (!opt_.field_selector.empty()) p += "fieldSelector=" + url_escape(opt_.field_selector) + "&";
  if (watch) {
    auto lo = opt_.min_watch.count(), hi = std::max(opt_.max_watch.count(), lo);
    auto timeout = std::uniform_int_distribution<long>(lo, hi)(rng());
    p += "watch=1&allowWatchBookmarks=true&resourceVersion=" + url_escape(rv_) +
         "&timeoutSeconds=" + std::to_string(timeout);
  } else {
    p += "limit=" + std::to_string(opt_.page_size);
  }
  return p;
}

bool Informer::excluded(std::string_view ns) const {
  return std::find(opt_.exclude_namespaces.begin(), opt_.exclude_namespaces.end(), ns) != opt_.exclude_namespaces.end();
}

void Informer::backoff(const std::atomic<bool>& stop, uint32_t server_hint_ms) {
  // Exponential from 250 ms to 30 s with full jitter; a server's
  // Retry-After (429, 503) wins when longer.
  ++failures_;
  double cap = std::min(30000.0, 250.0 * (1u << std::min(failures_, 7u)));
  auto ms = static_cast<long>(std::uniform_real_distribution<double>(cap / 2, cap)(rng()));
  ms = std::max<long>(ms, server_hint_ms);
  for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
       !stop.load() && std::chrono::steady_clock::now() < until;)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

bool Informer::list(bool initial, const std::atomic<bool>& stop) {
  std::string base = path(false), cont, list_rv;
  std::set<std::string> seen;
  dom::parser parser;
  std::string observed_at = now_rfc3339();
  do {
    if (stop.load()) return false;
    auto r = client_.get(base + (cont.empty() ? "" : "&continue=" + url_escape(cont)));
    if (r.status == 410 && !cont.empty()) {  // the continue token expired: start the list over
      spdlog::warn("{}: list continue token expired; listing again from the start", name_);
      cont.clear();
      seen.clear();
      continue;
    }
    if (r.status != 200) {
      ++stats_.errors;
      spdlog::warn("{}: list failed: {}", name_, describe_failure(r));
      backoff(stop, r.retry_after_ms);
      return false;
    }
    dom::element doc;
    if (parser.parse(simdjson::padded_string(r.body)).get(doc) != simdjson::SUCCESS) {
      ++stats_.errors;
      spdlog::warn("{}: list answer is not JSON", name_);
      backoff(stop, 0);
      return false;
    }
    std::string_view v;
    if (doc.at_pointer("/metadata/resourceVersion").get(v) == simdjson::SUCCESS && list_rv.empty()) list_rv.assign(v);
    cont = doc.at_pointer("/metadata/continue").get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
    dom::array items;
    if (doc["items"].get(items) == simdjson::SUCCESS) {
      diff::ListItemSources sources(parser, r.body);  // lets the pruner copy untouched subtrees
      for (dom::element item : items) {
        const diff::SourceText source = sources.next();
        std::string_view ns, name;
        if (item.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
        if (item.at_pointer("/metadata/name").get(name) != simdjson::SUCCESS) continue;
        if (excluded(ns)) continue;
        if (initial) {
          if (auto s = detector_.seed(opt_.type, item, store_, &source); !s) spdlog::warn("{}: {}", name_, s.error());
          continue;
        }
        seen.insert(ObjectStore::key_of(ns, name));  // only a relist looks for what vanished
        // A relist after 410: the fresh list against the cache. Same
        // resourceVersion: nothing; changed or new: the real difference.
        auto cs = detector_.observe(WatchEventType::modified, opt_.type, item, store_, observed_at, &source);
        if (cs && cs.value()) {
          cs.value()->catch_up = true;
          emit(std::move(*cs.value()));
        }
      }
    }
  } while (!cont.empty());
  if (!initial) {
    std::vector<std::string> gone;
    store_.for_each([&](const std::string& key, const StoredObject&) {
      if (!seen.count(key)) gone.push_back(key);
    });
    for (const auto& key : gone)
      if (auto cs = detector_.forget(opt_.type, key, store_, observed_at, list_rv)) {
        cs->catch_up = true;
        emit(std::move(*cs));
      }
  }
  rv_ = list_rv;
  full_checkpoint_ = true;
  checkpoint(true);
  ++(initial ? stats_.lists : stats_.relists);
  if (!initial) record(m_relists_);
  last_heard_ = std::chrono::steady_clock::now();
  failures_ = 0;
  return true;
}

Informer::WatchEnd Informer::watch(const std::atomic<bool>& stop) {
  if (stats_.watches++ > 0) record(m_watches_);
  JsonFramer framer;
  dom::parser parser;
  WatchEnd end = WatchEnd::ended;
  std::string frame_error;
  auto on_frame = [&](std::string_view frame, uint64_t offset) {
    if (end != WatchEnd::ended) return;
    dom::element doc;
    if (parser.parse(frame.data(), frame.size(), true).get(doc) != simdjson::SUCCESS) {
      frame_error = "malformed watch event at byte offset " + std::to_string(offset);
      end = WatchEnd::failed;
      return;
    }
    std::string_view type_name;
    dom::element object;
    if (doc["type"].get(type_name) != simdjson::SUCCESS || doc["object"].get(object) != simdjson::SUCCESS) {
      frame_error = "watch event without type or object at byte offset " + std::to_string(offset);
      end = WatchEnd::failed;
      return;
    }
    auto type = parse_watch_event_type(type_name);
    last_heard_ = std::chrono::steady_clock::now();
    if (type) record(m_events_[static_cast<int>(*type)]);
    if (type == WatchEventType::error) {
      int64_t code = 0;
      std::string_view msg;
      if (object["code"].get(code) != simdjson::SUCCESS) code = 0;
      if (object["message"].get(msg) != simdjson::SUCCESS) msg = "";
      if (code == 410) {
        end = WatchEnd::gone;
      } else {
        frame_error = "watch ERROR event " + std::to_string(code) + ": " + std::string(msg);
        end = WatchEnd::failed;
      }
      return;
    }
    std::string_view rv;
    if (object.at_pointer("/metadata/resourceVersion").get(rv) == simdjson::SUCCESS) rv_.assign(rv);
    if (!type || type == WatchEventType::bookmark) return;
    ++stats_.events;
    spdlog::trace("{}: {} resourceVersion {}", name_, to_string(*type), rv_);
    std::string_view ns;
    if (object.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
    if (excluded(ns)) return;
    diff::SourceText source{&parser, frame, "object"};  // lets the pruner copy untouched subtrees
    auto cs = detector_.observe(*type, opt_.type, object, store_, now_rfc3339(), &source);
    if (!cs) {
      spdlog::warn("{}: event at byte offset {}: {}", name_, offset, cs.error());
      return;
    }
    std::string_view name;
    if (object.at_pointer("/metadata/name").get(name) == simdjson::SUCCESS) touched(ns, name);
    if (cs.value())
      emit(std::move(*cs.value()));
    else
      record(m_noise_);
    checkpoint(false);
  };
  std::function<bool(std::string_view)> on_data = [&](std::string_view bytes) {
    auto fed = framer.feed(bytes, on_frame);
    if (!fed) {
      frame_error = fed.error();
      end = WatchEnd::failed;
    }
    return end == WatchEnd::ended;
  };
  long timeout_ms = (opt_.max_watch.count() + 60) * 1000;
  auto r = client_.stream(path(true), on_data, stop, timeout_ms);
  checkpoint(true);
  if (stop.load()) return WatchEnd::stopped;
  if (r.status == 410) return WatchEnd::gone;
  if (end == WatchEnd::gone) return end;
  if (end == WatchEnd::failed) {
    ++stats_.errors;
    spdlog::warn("{}: watch ended: {}", name_, frame_error);
    return end;
  }
  if (r.status != 200) {
    ++stats_.errors;
    spdlog::warn("{}: watch failed: {}", name_, describe_failure(r));
    backoff(stop, r.retry_after_ms);
    return WatchEnd::failed;
  }
  if (!r.error.empty())
    spdlog::info("{}: watch connection lost ({}); watching again from {}", name_, r.error, rv_);
  else
    spdlog::debug("{}: watch ended; watching again from {}", name_, rv_);
  failures_ = 0;
  return WatchEnd::ended;
}

void Informer::run(const std::atomic<bool>& stop) {
  // With a checkpoint from an earlier run, the first list is compared with
  // it - what changed while kubetrail was down is reported once, flagged
  // catchUp - instead of being taken silently as the starting state.
  bool catch_up = false;
  if (opt_.state) {
    try {
      if (auto cp = opt_.state->load(state_key_)) {
        for (auto& [key, obj] : cp->objects) {
          checkpointed_.insert(key);
          store_.put(key, std::move(obj));
        }
        catch_up = true;
        spdlog::info("{}: {} objects in the checkpoint from resourceVersion {}; reporting changes since", name_,
                     store_.size(), cp->resource_version);
      }
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot read the checkpoint: {}", name_, e.what());
    }
  }
  if (opt_.openapi_v3 && !opt_.openapi_v3->empty()) {
    dom::parser parser;
    dom::element doc;
    if (parser.parse(simdjson::padded_string(*opt_.openapi_v3)).get(doc) == simdjson::SUCCESS &&
        detector_.learn_openapi(opt_.type, doc))
      spdlog::debug("{}: list keys from the server's OpenAPI schema", name_);
    else
      spdlog::info("{}: no schema for {} in the server's OpenAPI document: built-in list keys only", name_,
                   opt_.type.kind);
  }
  if (opt_.report_existing && !catch_up) {
    catch_up = true;  // against an empty cache: everything listed is new
    spdlog::info("{}: served since kubetrail started: reporting what it holds as added", name_);
  }
  while (!stop.load() && !list(!catch_up, stop)) {
  }
  if (stop.load()) return;
  synced_ = true;
  spdlog::info("{}: synced {} objects at resourceVersion {}", name_, store_.size(), rv_);
  while (!stop.load()) {
    switch (watch(stop)) {
      case WatchEnd::gone:
        spdlog::info("{}: resourceVersion {} is too old (410 Gone): listing again to catch up", name_, rv_);
        while (!stop.load() && !list(false, stop)) {
        }
        break;
      case WatchEnd::failed: backoff(stop, 0); break;
      default: break;
    }
  }
  checkpoint(true);
}

}  // namespace kubetrail::kube
