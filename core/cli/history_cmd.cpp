// `kubetrail history`: what changed, when and by whom, from the change
// history a state store keeps (state/history.hpp) - the question an SRE
// asks first in an incident. Reads STATE-history while the daemon writes
// it (`kubectl exec` into the pod, or a copy of the volume).
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <map>
#include <thread>

#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "model/change_set.hpp"
#include "state/history.hpp"

namespace kubetrail::cli {

namespace {

std::atomic<bool> g_follow_stop{false};
extern "C" void on_follow_signal(int) { g_follow_stop.store(true); }

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "30m", "2h", "45s", "7d" before now, or an RFC 3339 time.
int64_t parse_time(const std::string& flag, const std::string& text) {
  if (auto t = rfc3339_to_ms(text)) return *t;
  static const std::map<char, int64_t> unit = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
  if (text.size() >= 2 && unit.count(text.back())) {
    int64_t n = 0;
    bool digits = true;
    for (size_t i = 0; i + 1 < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9' || n > (INT64_MAX / 86400000 - 9) / 10) digits = false;
      if (digits) n = n * 10 + (text[i] - '0');
    }
    if (digits) return now_ms() - n * unit.at(text.back());
  }
  throw Error(flag + " \"" + text + "\": expected a duration before now (30s, 30m, 2h, 7d) or an RFC 3339 time");
}

std::string value_text(const std::string& json) { return json.empty() ? "(none)" : json; }

std::string change_text(const model::FieldChange& c) {
  switch (c.op) {
    case model::FieldOp::add: return c.path + ": + " + value_text(c.new_json);
    case model::FieldOp::remove: return c.path + ": - " + value_text(c.old_json);
    default: return c.path + ": " + value_text(c.old_json) + " → " + value_text(c.new_json);
  }
}

std::string who(const model::ChangeSet& cs) {
  return cs.actor ? cs.actor->manager + " (" + cs.actor->operation + ")" : "unknown";
}

std::string object_of(const model::ChangeSet& cs) {
  return cs.resource.qualified_name() + " " + (cs.object_namespace.empty() ? "" : cs.object_namespace + "/") + cs.name;
}

void print_line(const model::ChangeSet& cs) {
  std::cout << cs.observed_at << "  " << model::to_string(cs.type) << "  " << object_of(cs) << "  by " << who(cs)
            << (cs.catch_up ? "  [catch-up]" : "");
  for (const auto& c : cs.changes) std::cout << "\n    " << change_text(c);
  std::cout << "\n";
}

}  // namespace

int run_history(const Args& args) {
  // --state, else the config's [state] path (in a pod: the mounted config).
  std::string state_path = args.get("--state");
  if (state_path.empty()) state_path = load_config(args).state.path;
  if (state_path.empty()) throw Error("--state PATH: the state store whose history to read ([state] path is \"\")");
  const auto path = state::History::path_for(state_path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error("no history at " + path.string() + " (kubetrail run keeps it beside [state] path; replay --state too)");
  state::History history(path, true);
  state::History::Filter f;
  f.since_ms = parse_time("--since", args.get("--since", "1h"));
  if (args.has("--until")) f.until_ms = parse_time("--until", args.get("--until"));
  f.namespace_ = args.get("--namespace");
  f.resource = args.get("--resource");
  f.name = args.get("--name");
  f.actor = args.get("--actor");
  f.type = args.get("--type");
  if (args.has("--path")) f.paths.push_back(args.get("--path"));
  f.limit = 0;
  f.oldest_first = true;
  const std::string output = args.get("--output", "text");
  const bool summary = args.has("--summary");
  auto rows = history.query(f);
  if (summary) {
    // One line per object, everything that changed to it in the window,
    // oldest to newest; objects in the order they first changed.
    std::vector<std::string> order;
    std::map<std::string, std::vector<model::ChangeSet>> by_object;
    for (const auto& r : rows) {
      auto cs = model::ChangeSet::from_json(r.json);
      auto key = object_of(cs);
      if (!by_object.count(key)) order.push_back(key);
      by_object[key].push_back(std::move(cs));
    }
    for (const auto& key : order) {
      const auto& list = by_object[key];
      std::cout << key << "  (" << list.size() << " change set" << (list.size() == 1 ? "" : "s") << ", "
                << list.front().observed_at << " → " << list.back().observed_at << "):";
      for (size_t i = 0; i < list.size(); ++i) {
        const auto& cs = list[i];
        std::cout << (i ? ";" : "") << " " << model::to_string(cs.type);
        std::string parts;
        for (const auto& c : cs.changes) parts += (parts.empty() ? "" : ", ") + change_text(c);
        if (!parts.empty()) std::cout << " " << parts;
        std::cout << " [" << (cs.actor ? cs.actor->manager : "unknown") << "]";
      }
      std::cout << "\n";
    }
    return 0;
  }
  auto print = [&](const state::History::Row& r) {
    if (output == "json")
      std::cout << r.json << "\n";
    else
      print_line(model::ChangeSet::from_json(r.json));
  };
  for (const auto& r : rows) print(r);
  std::cout.flush();
  if (!args.has("--follow")) return 0;
  // New change sets as they are kept, until SIGINT/SIGTERM.
  std::signal(SIGINT, on_follow_signal);
  std::signal(SIGTERM, on_follow_signal);
  f.after_seq = rows.empty() ? history.last_seq() : rows.back().seq;
  f.since_ms = 0;
  f.until_ms = INT64_MAX;
  while (!g_follow_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    for (const auto& r : history.query(f)) {
      print(r);
      f.after_seq = std::max(f.after_seq, r.seq);
    }
    std::cout.flush();
  }
  return 0;
}

}  // namespace kubetrail::cli
