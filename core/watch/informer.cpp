#include "watch/informer.hpp"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <random>
#include <set>
#include <thread>

#include "common/clock.hpp"
#include "common/dictionary_codec.hpp"
#include "common/log_context.hpp"
#include "common/metrics.hpp"
#include "kube/discovery.hpp"
#include "kube/watch_stream.hpp"
#include "state/state_store.hpp"
#include "watch/list_pages.hpp"
#include "watch/request.hpp"

namespace kubetrail::watch {

namespace dom = simdjson::dom;

namespace {

std::mt19937& rng() {
  thread_local std::mt19937 r{std::random_device{}()};
  return r;
}

}  // namespace

Informer::Informer(kube::Api& client, InformerOptions options, std::string cluster, model::DiffOptions diff, Sink sink)
    : client_(client),
      clock_(options.clock ? *options.clock : Clock::real()),
      backoff_(options.backoff),
      opt_(std::move(options)),
      name_(opt_.type.qualified_name() + (opt_.namespace_scope.empty() ? "" : " in " + opt_.namespace_scope)),
      scope_{opt_.namespace_scope, opt_.exclude_namespaces, opt_.label_selector, opt_.field_selector},
      detector_(std::move(cluster), std::move(diff)),
      tracker_(detector_, opt_.type),
      checkpoint_(opt_.state,
                  opt_.type.qualified_name() + "/" + opt_.type.version +
                      (opt_.namespace_scope.empty() ? "" : "@" + opt_.namespace_scope),
                  name_, std::move(sink)) {
  if (auto* m = opt_.metrics) {
    std::string r = opt_.type.qualified_name();
    for (auto t : {model::WatchEventType::added, model::WatchEventType::modified, model::WatchEventType::deleted,
                   model::WatchEventType::bookmark, model::WatchEventType::error})
      m_events_[static_cast<int>(t)] =
          m->define(MetricKind::counter, "kubetrail_watch_events_total", "watch events received",
                    {{"resource", r}, {"type", std::string(to_string(t))}});
    for (auto t : {model::ChangeType::added, model::ChangeType::modified, model::ChangeType::deleted})
      m_change_sets_[static_cast<int>(t)] =
          m->define(MetricKind::counter, "kubetrail_change_sets_total", "change sets produced",
                    {{"resource", r}, {"type", std::string(model::to_string(t))}});
    m_noise_ = m->define(MetricKind::counter, "kubetrail_noise_dropped_total",
                         "watch events dropped because only noise changed", {{"resource", r}});
    // Why a list was made again: the watch's resourceVersion was too old
    // (410 Gone), or a list page's continue token expired mid-list.
    m_relists_expired_ = m->define(MetricKind::counter, "kubetrail_relists_total", "lists made again, by reason",
                                   {{"resource", r}, {"reason", "watch_expired"}});
    m_relists_continue_ = m->define(MetricKind::counter, "kubetrail_relists_total", "lists made again, by reason",
                                    {{"resource", r}, {"reason", "continue_expired"}});
    m_failed_ = m->define(MetricKind::counter, "kubetrail_events_failed_total",
                          "watch events and list items that could not be handled (logged, skipped)", {{"resource", r}});
    m_watches_ = m->define(MetricKind::counter, "kubetrail_watch_restarts_total", "watches started after the first",
                           {{"resource", r}});
    m_listed_ = m->define(MetricKind::gauge, "kubetrail_list_objects",
                          "objects received so far by the list in progress (0 when none is)", {{"resource", r}});
    // For alerts: time() minus this is how long the watch has been silent
    // (kube-apiserver sends a bookmark about every minute on a quiet watch).
    m_last_event_ = m->define(MetricKind::gauge, "kubetrail_watch_last_event_timestamp_seconds",
                              "when the resource's watch last received an event or bookmark, or its list completed "
                              "(unix seconds)",
                              {{"resource", r}});
  }
}

void Informer::record(int32_t id, double v) {
  if (opt_.metrics) opt_.metrics->record(id, v);
}

void Informer::set_listed(uint64_t n) {
  listed_ = n;
  record(m_listed_, static_cast<double>(n));
}

void Informer::emit(model::ChangeSet&& cs) {
  record(m_change_sets_[static_cast<int>(cs.type)]);
  checkpoint_.emit(std::move(cs));
}

void Informer::heard() {
  last_heard_ = std::chrono::steady_clock::now();
  if (m_last_event_ >= 0)
    record(m_last_event_, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void Informer::touched(std::string_view ns, std::string_view name) {
  if (opt_.state) checkpoint_.touched(model::ObjectStore::key_of(ns, name));
}

void Informer::commit(bool force) {
  const size_t waiting = checkpoint_.waiting();
  try {
    if (!checkpoint_.commit(force, clock_.now(), rv_, tracker_.store())) ++stats_.errors;
  } catch (const std::exception& e) {
    // The sink threw (delivery could not take the batch): like an event
    // that cannot be handled, reported and skipped - the watch goes on.
    // With a state store the batch is durable already: its journal entries
    // hand it on at the next start.
    failed(nullptr, std::to_string(waiting) + " change set(s) handed on", e.what());
  }
  share_dictionary();
}

// Once the state store has a dictionary for this resource (made from the
// first list page it saved, or read back at start), the cache packs with it
// too: each save then writes the cache's frames as they are, where it
// decompressed and compressed every changed object again (perf, 100k pods:
// most of what the state store added to an event on this thread).
// Only a saving: should it fail, saves go on compressing each object.
void Informer::share_dictionary() noexcept {
  if (!opt_.state) return;
  try {
    const uint64_t wanted = opt_.state->dictionary_fingerprint(checkpoint_.key());
    if (wanted == 0 || wanted == tracker_.store().dictionary_fingerprint()) return;
    if (auto content = opt_.state->dictionary_content(checkpoint_.key()))
      if (DictionaryCodec::fingerprint(*content) == wanted) tracker_.store().pack_with(*content);
  } catch (const std::exception& e) {
    spdlog::warn("{}: the cache cannot take the state store's dictionary (saves compress each object): {}", name_,
                 e.what());
  }
}

std::string Informer::path(bool watch) const {
  std::string p = collection_path(opt_.type, scope_);
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

bool Informer::excluded(std::string_view ns) const { return watch::excluded(scope_, ns); }

void Informer::pause(const std::atomic<bool>& stop, uint32_t server_hint_ms, std::string_view why) {
  auto delay = backoff_.next(clock_.now(), std::uniform_real_distribution<double>(0, 1)(rng()));
  delay = std::max(delay, std::chrono::milliseconds(server_hint_ms));
  spdlog::info("{}: {}: waiting {} ms (attempt {} of this backoff)", name_, why, delay.count(), backoff_.failures());
  clock_.sleep(delay, stop);
}

void Informer::list_until_done(bool initial, bool wait_first, const std::atomic<bool>& stop) {
  if (wait_first) pause(stop, 0, initial ? "listing" : "relisting");
  auto attempt = [&] {
    bool ok = false;
    try {
      ok = list(initial, stop);
    } catch (const std::exception& e) {  // never out of the informer's thread
      ++stats_.errors;
      spdlog::error("{}: list failed: {}", name_, e.what());
    }
    set_listed(0);  // no list in progress
    return ok;
  };
  while (!stop.load() && !attempt()) {
    uint32_t hint = retry_after_ms_;
    retry_after_ms_ = 0;
    pause(stop, hint, "list failed");
  }
}

void Informer::list_item(dom::element item, const diff::SourceText& source, bool initial, SeenKeys* seen,
                         const std::string& observed_at) {
  std::string_view ns, name;
  if (item.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
  if (item.at_pointer("/metadata/name").get(name) != simdjson::SUCCESS) return;
  if (excluded(ns)) return;
  // Only a relist, or an initial list started over, looks for what vanished.
  if (seen) seen->insert(model::ObjectStore::key_of(ns, name));
  if (initial) {
    if (auto s = tracker_.seed(item, &source); !s)
      failed(&item, "list item", s.error());
    else
      touched(ns, name);
    return;
  }
  // A relist after 410 (or the first list against a checkpoint): the
  // fresh list against the cache. Another uid under the same name: the
  // old object is gone and this one new. Same resourceVersion:
  // nothing; changed or new: the real difference.
  auto applied = tracker_.apply(model::WatchEventType::modified, item, observed_at, &source, /*catch_up=*/true);
  if (applied.replaced) {
    emit(std::move(*applied.replaced));
    touched(ns, name);
  }
  if (!applied.error.empty()) {
    failed(&item, "list item", applied.error);
  } else if (applied.change) {
    emit(std::move(*applied.change));
    touched(ns, name);
  }
}

void Informer::failed(const dom::element* object, const std::string& where, std::string_view why) {
  std::string_view ns, name = "(no name)";
  if (object) {
    if (object->at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
    if (object->at_pointer("/metadata/name").get(name) != simdjson::SUCCESS) name = "(no name)";
  }
  ++stats_.errors;
  record(m_failed_);
  spdlog::error("{}: {} {}{}{}: cannot be handled, skipped: {}", name_, where, ns, ns.empty() ? "" : "/", name, why);
}

void Informer::skip_too_deep(dom::element object, const std::string& where, SeenKeys* seen) {
  std::string_view ns, name;
  if (object.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
  // Still there: a relist must not report it deleted.
  if (seen && object.at_pointer("/metadata/name").get(name) == simdjson::SUCCESS)
    seen->insert(model::ObjectStore::key_of(ns, name));
  if (!excluded(ns)) failed(&object, where, nested_deeper_than() + " (kept as last seen)");
}

void Informer::deleted_too_deep(dom::element object, const std::string& where) {
  std::string_view ns, name, rv;
  if (object.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
  if (excluded(ns)) return;
  std::optional<model::ChangeSet> cs;
  if (object.at_pointer("/metadata/name").get(name) == simdjson::SUCCESS &&
      object.at_pointer("/metadata/resourceVersion").get(rv) == simdjson::SUCCESS)
    cs = tracker_.deleted_unread(model::ObjectStore::key_of(ns, name), now_rfc3339(), rv);
  if (!cs) return skip_too_deep(object, where, nullptr);  // never read: nothing of it was reported
  spdlog::warn("{}: {} {}{}{}: deleted while {}: reported from the last version read", name_, where, ns,
               ns.empty() ? "" : "/", name, nested_deeper_than());
  touched(ns, name);
  emit(std::move(*cs));
}

bool Informer::list(bool initial, const std::atomic<bool>& stop) {
  std::string list_rv;
  SeenKeys seen;
  std::string observed_at = now_rfc3339();
  // A long list (100,000 pods take tens of seconds) says how far it is
  // every few seconds, rather than nothing until "synced".
  struct Progress {
    Clock::time_point started, logged;
    uint64_t objects = 0, pages = 0, bytes = 0;
  } progress{clock_.now(), clock_.now()};
  set_listed(0);
  // An initial list that starts over - a page failed and list_until_done()
  // tries again, or the continue token expired below - finds the cache
  // seeded by the pass cut short. What the completed pass does not list
  // was deleted in between: it must go, or it stays as a ghost no watch
  // event removes. So such a list, like a relist, keeps what it has seen.
  bool track_seen = !initial || tracker_.store().size() > 0;
  auto expired = [&](int64_t retry_after_ms) {  // the continue token expired: the list starts over, after a pause
    spdlog::warn("{}: list continue token expired; listing again from the start", name_);
    record(m_relists_continue_);
    seen.clear();
    track_seen = true;
    list_rv.clear();
    pause(stop, retry_after_ms, "continue token expired");
    return true;
  };
  auto page = [&](ListPage& listed) {
    std::string_view v;
    if (list_rv.empty() && listed.doc.at_pointer("/metadata/resourceVersion").get(v) == simdjson::SUCCESS)
      list_rv.assign(v);
    if (listed.items) {
      for (dom::element item : *listed.items) {
        ++progress.objects;
        const diff::SourceText source = listed.items_text.next();
        if (listed.deep && too_deep(item)) {
          skip_too_deep(item, "list item", track_seen ? &seen : nullptr);
          continue;
        }
        try {
          list_item(item, source, initial, track_seen ? &seen : nullptr, observed_at);
        } catch (const std::exception& e) {
          failed(&item, "list item", e.what());
        }
      }
    }
    commit(true);  // one transaction per page: its objects and the change sets they amount to
    progress.bytes += listed.bytes;
    ++progress.pages;
    set_listed(progress.objects);
    if (auto now = clock_.now(); !listed.last && now - progress.logged >= kListProgressEvery) {
      progress.logged = now;
      double seconds = std::chrono::duration<double>(now - progress.started).count();
      spdlog::info("{}: listing: {} objects in {} pages ({:.1f} MB) so far, {:.0f} objects/s", name_, progress.objects,
                   progress.pages, static_cast<double>(progress.bytes) / 1e6,
                   seconds > 0 ? static_cast<double>(progress.objects) / seconds : 0.0);
    }
  };
  const ListEnd end = read_list(client_, path(false), stop, deep_parser_, expired, page);
  if (end.how == ListEnd::How::stopped) return false;
  if (end.how == ListEnd::How::failed) {
    ++stats_.errors;
    spdlog::warn("{}: list failed: {}", name_, end.why);
    retry_after_ms_ = end.retry_after_ms;
    return false;
  }
  if (track_seen) {
    std::vector<std::string> gone;
    tracker_.store().for_each([&](std::string_view key, const model::StoredObject&) {
      if (!seen.contains(key)) gone.emplace_back(key);
    });
    for (const auto& key : gone) {
      if (initial) {
        // Never reported (an initial list is the starting state, taken
        // silently): it simply is not part of it.
        tracker_.store().erase(key);
        checkpoint_.touched(key);
      } else if (auto cs = tracker_.vanished(key, observed_at, list_rv)) {
        emit(std::move(*cs));
        checkpoint_.touched(key);
      }
    }
    if (initial && !gone.empty())
      spdlog::info("{}: {} object(s) listed by the pass cut short are gone from the completed list", name_,
                   gone.size());
  }
  rv_ = list_rv;
  checkpoint_.prune_at_next_commit();
  commit(true);
  ++(initial ? stats_.lists : stats_.relists);
  heard();
  return true;
}

static_assert(kube::JsonFramer::kReadablePast >= simdjson::SIMDJSON_PADDING,
              "watch events are parsed where the framer leaves them: simdjson reads up to its padding past the end");

Informer::WatchEnd Informer::watch(const std::atomic<bool>& stop) {
  if (stats_.watches++ > 0) record(m_watches_);
  kube::JsonFramer framer(opt_.max_event_bytes);
  dom::parser parser;
  WatchEnd end = WatchEnd::ended;
  std::string frame_error;
  uint64_t events = 0;  // added, modified or deleted: the watch did something
  // Parsed where it lies: the framer leaves readable bytes after it. The
  // object's members that pruning only copies are left out of the DOM
  // (diff::ChangeDetector::parse_event); `hollow.index` is then the index
  // the pruner copies them by.
  diff::HollowParse hollow;
  auto parse_frame = [&](std::string_view frame) {
    const simdjson::padded_string_view text(frame, frame.size() + kube::JsonFramer::kReadablePast);
    tracker_.parse_event(parser, text, hollow);
    if (hollow.error != simdjson::DEPTH_ERROR) return DeepParse{hollow.error, hollow.doc, &parser, false};
    hollow.index.clear();
    hollow.regions.clear();
    return parse_allowing_deep(parser, deep_parser_, text);
  };
  auto handle_event = [&](const DeepParse& event, std::string_view frame, uint64_t offset) {
    const dom::element doc = event.doc;
    std::string_view type_name;
    dom::element object;
    if (doc["type"].get(type_name) != simdjson::SUCCESS || doc["object"].get(object) != simdjson::SUCCESS) {
      frame_error = "watch event without type or object at byte offset " + std::to_string(offset);
      end = WatchEnd::failed;
      return;
    }
    auto type = model::parse_watch_event_type(type_name);
    heard();
    if (type) record(m_events_[static_cast<int>(*type)]);
    if (type == model::WatchEventType::error) {
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
    if (!type || type == model::WatchEventType::bookmark) return;
    ++stats_.events;
    if (event.deep && too_deep(object)) {  // past it: its resourceVersion is taken, the watch goes on
      const std::string where = "event at byte offset " + std::to_string(offset);
      if (type == model::WatchEventType::deleted)
        deleted_too_deep(object, where);
      else
        skip_too_deep(object, where, nullptr);
      return;
    }
    spdlog::trace("{}: {} resourceVersion {}", name_, to_string(*type), rv_);
    ++events;
    std::string_view ns;
    if (object.at_pointer("/metadata/namespace").get(ns) != simdjson::SUCCESS) ns = {};
    if (excluded(ns)) return;
    std::string observed_at = now_rfc3339();
    // Another uid under a cached name: that object was deleted unseen.
    // Lets the pruner copy untouched subtrees.
    diff::SourceText source = event.parser == &parser ? hollow.source(parser, frame, "object")
                                                      : diff::SourceText{event.parser, frame, "object"};
    auto applied = tracker_.apply(*type, object, observed_at, &source);
    std::string_view name;
    bool named = object.at_pointer("/metadata/name").get(name) == simdjson::SUCCESS;
    if (applied.replaced) {
      emit(std::move(*applied.replaced));
      if (named) touched(ns, name);  // its row leaves the checkpoint even if the event fails below
    }
    if (!applied.error.empty()) {
      failed(&object, "event at byte offset " + std::to_string(offset), applied.error);
      return;
    }
    if (named) touched(ns, name);
    if (applied.change)
      emit(std::move(*applied.change));
    else
      record(m_noise_);
  };
  // One event that cannot be handled is reported and skipped; it never
  // ends the watch, let alone the process (issue 13: a Deployment with an
  // env var named "" once killed the daemon at every start).
  auto guarded = [&](const DeepParse& event, std::string_view frame, uint64_t offset) {
    try {
      handle_event(event, frame, offset);
    } catch (const std::exception& e) {
      dom::element doc, object;
      bool named = parser.parse(frame.data(), frame.size(), true).get(doc) == simdjson::SUCCESS &&
                   doc["object"].get(object) == simdjson::SUCCESS;
      failed(named ? &object : nullptr, "event at byte offset " + std::to_string(offset), e.what());
    }
  };
  auto on_frame = [&](std::string_view frame, uint64_t offset) {
    if (end != WatchEnd::ended) return;
    const DeepParse event = parse_frame(frame);
    if (event.error == simdjson::DEPTH_ERROR) {  // deeper than any server writes: still one event, skipped
      failed(nullptr, "event at byte offset " + std::to_string(offset), nested_deeper_than(kDeepestServerJson));
      return;
    }
    if (event.error != simdjson::SUCCESS) {
      frame_error = "malformed watch event at byte offset " + std::to_string(offset) + ": " +
                    simdjson::error_message(event.error);
      end = WatchEnd::failed;
      return;
    }
    guarded(event, frame, offset);
  };
  // A line that parses is one event, handled as it lies; one that does not
  // is left to the framer's exact scan, and to on_frame's errors.
  framer.offer_lines([&](std::string_view line, uint64_t offset) {
    if (end != WatchEnd::ended) return true;
    const DeepParse event = parse_frame(line);
    if (event.error != simdjson::SUCCESS) return false;
    guarded(event, line, offset);
    return true;
  });
  std::function<bool(std::string_view)> on_data = [&](std::string_view bytes) {
    auto fed = framer.feed(bytes, on_frame);
    if (!fed) {
      frame_error = fed.error();
      end = WatchEnd::failed;
    }
    // Group commit: the events that arrived together are made durable
    // together, before any of their change sets is handed on.
    commit(false);
    return end == WatchEnd::ended;
  };
  long timeout_ms = (opt_.max_watch.count() + 60) * 1000;
  auto started = clock_.now();
  auto r = client_.stream(path(true), on_data, stop, timeout_ms);
  // Events held for a newline that never came are framed as the scan would
  // have (kube-apiserver ends every event with one; this is for a stream
  // that put two on one line and was cut). An event cut short is not an
  // error here: the next watch starts at the last one handled.
  (void)framer.finish(on_frame);
  commit(true);
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
    spdlog::warn("{}: watch failed: {}", name_, kube::describe_failure(r));
    watch_retry_after_ms_ = r.retry_after_ms;
    return WatchEnd::failed;
  }
  if (events == 0 && clock_.now() - started < opt_.short_watch) {
    ++stats_.errors;
    spdlog::warn("{}: watch ended at once, with no event ({})", name_,
                 r.error.empty() ? "closed by the server" : r.error);
    return WatchEnd::failed;
  }
  if (!r.error.empty())
    spdlog::info("{}: watch connection lost ({}); watching again from {}", name_, r.error, rv_);
  else
    spdlog::debug("{}: watch ended; watching again from {}", name_, rv_);
  return WatchEnd::ended;
}

void Informer::run(const std::atomic<bool>& stop) {
  log_context::Scope resource("resource", opt_.type.qualified_name());
  // With a checkpoint from an earlier run, the first list is compared with
  // it - what changed while kubetrail was down is reported once, flagged
  // catchUp - instead of being taken silently as the starting state.
  bool catch_up = false;
  if (opt_.state) {
    try {
      if (auto cp = opt_.state->load(checkpoint_.key())) {
        share_dictionary();  // before the objects go in: packed once, with it
        for (auto& [key, obj] : cp->objects) tracker_.store().put(key, std::move(obj));
        // An unreadable row is an object unknown to the catch-up (reported
        // if it is there, not lost); its row is rewritten or pruned after it.
        for (const auto& [key, why] : cp->unreadable)
          spdlog::warn("{}: checkpoint row {} in {} cannot be read ({}); taken as not checkpointed", name_, key,
                       opt_.state->path(), why);
        catch_up = true;
        spdlog::info("{}: {} objects in the checkpoint from resourceVersion {}; reporting changes since", name_,
                     tracker_.store().size(), cp->resource_version);
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
  list_until_done(!catch_up, false, stop);
  if (stop.load()) return;
  synced_ = true;
  spdlog::info("{}: synced {} objects at resourceVersion {}", name_, tracker_.store().size(), rv_);
  while (!stop.load()) {
    WatchEnd end;
    try {
      end = watch(stop);
    } catch (const std::exception& e) {  // never out of the informer's thread
      ++stats_.errors;
      spdlog::error("{}: watch failed: {}", name_, e.what());
      end = WatchEnd::failed;
    }
    switch (end) {
      case WatchEnd::gone:
        // Relist, never at once: a server that answers 410 to every watch
        // would otherwise be listed in a tight loop.
        spdlog::info("{}: resourceVersion {} is too old (410 Gone): listing again to catch up", name_, rv_);
        record(m_relists_expired_);
        list_until_done(false, true, stop);
        break;
      case WatchEnd::failed: {
        uint32_t hint = watch_retry_after_ms_;
        watch_retry_after_ms_ = 0;
        pause(stop, hint, "watch failed");
        break;
      }
      default: break;
    }
  }
  commit(true);
}

}  // namespace kubetrail::watch
