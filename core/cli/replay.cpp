// `kubetrail replay [--config FILE] RECORDING...`: feeds recorded watch
// streams through the real pipeline (cache, diff, routes, handlers), so a
// config can be tried without a cluster.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/common.hpp"
#include "cli/pipeline.hpp"
#include "common/deep_json.hpp"
#include "common/error.hpp"
#include "common/json_depth.hpp"
#include "diff/diff.hpp"
#include "kube/recording.hpp"
#include "model/resource_type.hpp"
#include "state/history.hpp"
#include "watch/tracker.hpp"

namespace kubetrail::cli {

namespace {

bool wanted_resource(const config::WatchConfig& w, const model::ResourceType& t) {
  if (w.resources.empty()) return true;
  return std::any_of(w.resources.begin(), w.resources.end(), [&](const std::string& n) { return t.named_by(n); });
}

bool wanted_namespace(const config::WatchConfig& w, std::string_view ns) {
  auto in = [&](const std::vector<std::string>& list) { return std::find(list.begin(), list.end(), ns) != list.end(); };
  if (!w.namespaces.empty() && !in(w.namespaces)) return false;
  return !in(w.exclude_namespaces);
}

}  // namespace

int run_replay(const Args& args) {
  if (args.positional.empty()) {
    std::cerr << "usage: kubetrail replay [--config FILE] [--plugins-dir DIR] RECORDING...\n"
                 "  RECORDING: output of `kubectl get RESOURCE --watch --output-watch-events -o json`\n";
    return 2;
  }
  config::Config cfg = load_config(args);  // errors: exit 2 through main()
  setup_logging(cfg, args);

  std::vector<std::filesystem::path> files(args.positional.begin(), args.positional.end());
  kube::Recording recording;
  try {
    recording = kube::Recording::load(files);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }

  Metrics metrics;
  Pipeline pipeline(cfg, args, metrics);
  cfg.diff.redaction_key = configured_redaction_key(cfg);  // else the detector draws one for this run
  diff::ChangeDetector detector(cfg.cluster.name, cfg.diff);
  std::map<std::string, watch::Tracker> trackers;  // per resource, like one informer each: the same per-event step

  // --state PATH: the change sets kept in PATH-history as run keeps them.
  std::unique_ptr<state::History> history;
  if (args.has("--state")) history = std::make_unique<state::History>(state::History::path_for(args.get("--state")));
  std::vector<model::ChangeSet> kept;
  auto deliver = [&](const model::ChangeSet& cs) {
    if (history) {
      kept.push_back(cs);
      if (kept.size() >= 256) {
        history->append(kept);
        kept.clear();
      }
    }
    return pipeline.deliver(cs);
  };

  simdjson::dom::parser parser;
  std::unique_ptr<simdjson::dom::parser> deep_parser;  // for a deletion nested too deep (RecordedEvent::deep)
  bool delivered_all = true;
  uint64_t skipped = 0;
  for (const auto& ev : recording.events()) {
    if (ev.type == model::WatchEventType::bookmark) continue;
    // Checked by load, with the parser each needs.
    const simdjson::padded_string_view frame(ev.frame.data(), ev.frame.size(),
                                             ev.frame.size() + kube::JsonFramer::kReadablePast);
    simdjson::dom::element doc = (ev.deep ? parse_allowing_deep(parser, deep_parser, frame).doc
                                          : parser.parse(ev.frame.data(), ev.frame.size(), false).value_unsafe());
    simdjson::dom::element object = doc["object"].value_unsafe();
    if (ev.type == model::WatchEventType::error) {
      std::string_view msg;
      if (object["message"].get(msg) != simdjson::SUCCESS) msg = "(no message)";
      spdlog::warn("{}: byte offset {}: recorded ERROR event: {}", recording.files()[ev.file], ev.offset, msg);
      continue;
    }
    auto text_at = [&](const char* pointer) {
      std::string_view v;
      return object.at_pointer(pointer).get(v) == simdjson::SUCCESS ? v : std::string_view();
    };
    std::string_view api_version = text_at("/apiVersion"), kind = text_at("/kind"), ns = text_at("/metadata/namespace");
    model::ResourceType type = model::resource_type_for(api_version, kind);
    // A CRD in the stream teaches the diff its resource's keyed lists, even
    // when CRDs themselves are not reported.
    if (type.group == "apiextensions.k8s.io" && type.kind == "CustomResourceDefinition" &&
        ev.type != model::WatchEventType::deleted)
      detector.learn_crd(object);
    if (!wanted_resource(cfg.watch, type) || !wanted_namespace(cfg.watch, ns)) {
      ++skipped;
      continue;
    }
    auto& tracker = trackers.try_emplace(type.qualified_name(), detector, type).first->second;
    if (ev.deep) {  // a DELETED too deep to read: from the last version read, as the informer reports it
      std::string_view name = text_at("/metadata/name"), rv = text_at("/metadata/resourceVersion");
      std::optional<model::ChangeSet> cs;
      if (!name.empty()) cs = tracker.deleted_unread(model::ObjectStore::key_of(ns, name), now_rfc3339(), rv);
      if (!cs) {
        spdlog::error("{}: byte offset {}: event {}, skipped", recording.files()[ev.file], ev.offset,
                      nested_deeper_than());
        delivered_all = false;
        continue;
      }
      spdlog::warn("{}: byte offset {}: deleted while {}: reported from the last version read",
                   recording.files()[ev.file], ev.offset, nested_deeper_than());
      if (!deliver(*cs)) delivered_all = false;
      continue;
    }
    diff::SourceText source{&parser, ev.frame, "object"};  // lets the pruner copy untouched subtrees
    // One object that cannot be diffed is reported and skipped: the events
    // after it are still replayed.
    watch::Tracker::Applied applied;
    try {
      applied = tracker.apply(ev.type, object, now_rfc3339(), &source);  // one moment for the event's change sets
    } catch (const std::exception& e) {
      applied.error = e.what();
    }
    if (applied.replaced && !deliver(*applied.replaced)) delivered_all = false;
    if (!applied.error.empty()) {
      spdlog::error("{}: byte offset {}: {}", recording.files()[ev.file], ev.offset, applied.error);
      delivered_all = false;
      continue;
    }
    if (applied.change && !deliver(*applied.change)) delivered_all = false;
  }
  if (!pipeline.flush()) delivered_all = false;
  if (history) history->append(kept);

  const auto& ds = detector.stats();
  const auto& ps = pipeline.stats();
  spdlog::info(
      "replayed {} events from {} file(s): {} change sets, {} noise-only updates dropped, {} skipped by "
      "[watch] filters, {} unrouted, {} deliveries failed",
      recording.events().size(), recording.files().size(), ds.change_sets, ds.noise, skipped, ps.unrouted.load(),
      ps.dead.load());
  for (const auto& e : recording.errors()) spdlog::error("{}", e);
  return recording.errors().empty() && delivered_all && !pipeline.handler_errors() ? 0 : 1;
}

}  // namespace kubetrail::cli
