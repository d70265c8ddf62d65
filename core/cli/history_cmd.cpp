// `kubetrail history`: what changed, when and by whom, from the change
// history a state store keeps (state/history.hpp) - the question an SRE
// asks first in an incident. Reads STATE-history while the daemon writes
// it (--state: in the pod, or a copy of the volume), or asks a running
// kubetrail's change API (--server: through kubectl port-forward).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/json_depth.hpp"
#include "model/change_set.hpp"
#include "state/history.hpp"

namespace kubetrail::cli {

namespace {

std::atomic<bool> g_follow_stop{false};
extern "C" void on_follow_signal(int) { g_follow_stop.store(true); }

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

// YAML as kubectl writes it: block style, strings quoted only where plain
// text would read as something else.
void emit_yaml(const nlohmann::ordered_json& j, YAML::Emitter& out) {
  if ((j.is_object() || j.is_array()) && j.empty()) out << YAML::Flow;  // "key: {}", as kubectl writes it
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      out << YAML::Key << k << YAML::Value;
      emit_yaml(v, out);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& v : j) emit_yaml(v, out);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    const auto& text = j.get_ref<const std::string&>();
    // What a YAML reader would take for a number, bool or null stays a string.
    bool ambiguous = true;
    YAML::Node plain;
    try {
      plain = YAML::Load(text);
      ambiguous = text.empty() || !plain.IsScalar() || plain.Scalar() != text || plain.Tag() != "?";
    } catch (const YAML::Exception&) {  // not plain YAML at all: quoted
    }
    double number;
    bool boolean;
    // A YAML 1.1 reader takes 2026-11-23... for a timestamp (kubectl quotes them too).
    const bool date = text.size() >= 10 && std::isdigit(static_cast<unsigned char>(text[0])) && text[4] == '-';
    if (!ambiguous)
      ambiguous = date || YAML::convert<double>::decode(plain, number) || YAML::convert<bool>::decode(plain, boolean) ||
                  text == "null" || text == "~";
    if (ambiguous) out << YAML::DoubleQuoted;
    out << text;
  } else if (j.is_boolean()) {
    out << j.get<bool>();
  } else if (j.is_null()) {
    out << "null";
  } else {
    out << j.dump();  // a number, as JSON wrote it
  }
}

std::string to_yaml(const std::string& json) {
  YAML::Emitter out;
  if (json_nested_deeper_than(json))  // emit_yaml recurses once a level
    throw Error("a change set " + nested_deeper_than());
  emit_yaml(nlohmann::ordered_json::parse(json), out);
  return std::string("---\n") + out.c_str() + "\n";
}

// A filter parameter by its API name (state::History::filter_from).
using Param = std::function<std::optional<std::string>(const std::string&)>;
using Print = std::function<void(const std::string& json)>;

// Where change sets come from: the history file (--state), or a running
// kubetrail's API (--server).
struct Source {
  // Every matching change set of the window, oldest first.
  std::function<std::vector<std::string>(const Param&)> window;
  // New ones after `last_id` ("" = from now) until stopped.
  std::function<void(const Param&, const std::string& last_id, const Print&)> follow;
};

const std::vector<std::pair<const char*, const char*>> kFilterOptions = {
    {"since", "--since"}, {"until", "--until"}, {"namespace", "--namespace"}, {"resource", "--resource"},
    {"name", "--name"},   {"actor", "--actor"}, {"path", "--path"},           {"type", "--type"}};

Source state_source(const Args& args) {
  // --state, else the config's [state] path (in a pod: the mounted config).
  std::string state_path = args.get("--state");
  if (state_path.empty()) state_path = load_config(args).state.path;
  if (state_path.empty()) throw Error("--state PATH: the state store whose history to read ([state] path is \"\")");
  const auto path = state::History::path_for(state_path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error("no history at " + path.string() + " (kubetrail run keeps it beside [state] path; replay --state too)");
  auto history = std::make_shared<state::History>(path, true);
  Source src;
  src.window = [history](const Param& param) {
    auto f = state::History::filter_from(param, now_unix_ms(), "--");
    f.limit = 0;
    f.oldest_first = true;
    std::vector<std::string> out;
    for (auto& r : history->query(f)) out.push_back(std::move(r.json));
    return out;
  };
  src.follow = [history](const Param& param, const std::string& last_id, const Print& print) {
    auto f = state::History::filter_from(param, now_unix_ms(), "--");
    f.after_seq = last_id.empty() ? 0 : history->seq_of(last_id);
    if (!f.after_seq) f.after_seq = history->last_seq();
    f.since_ms = 0;
    f.until_ms = INT64_MAX;
    f.limit = 0;
    f.in_written_order = true;
    while (!g_follow_stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      for (const auto& r : history->query(f)) {
        print(r.json);
        f.after_seq = std::max(f.after_seq, r.seq);
      }
    }
  };
  return src;
}

std::string query_of(const Param& param, const std::vector<std::string>& skip) {
  std::string q;
  for (const auto& [name, option] : kFilterOptions) {
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (auto v = param(name)) q += std::string(q.empty() ? "" : "&") + name + "=" + ApiClient::escape(*v);
  }
  return q;
}

Source server_source(const Args& args) {
  auto client = std::make_shared<ApiClient>(args.get("--server"), api_token(args.get("--token-file")));
  Source src;
  src.window = [client](const Param& param) {
    state::History::filter_from(param, now_unix_ms(), "--");  // a bad option named as typed, before asking
    // Pages newest first, as the API gives them; the window oldest first.
    std::vector<std::string> out;
    std::string cursor;
    do {
      // ordered: each change set printed as the server wrote it
      const std::string path = "/api/v1/changes?limit=1000&" + query_of(param, {}) +
                               (cursor.empty() ? "" : "&cursor=" + ApiClient::escape(cursor));
      const std::string body = client->get(path);
      if (json_nested_deeper_than(body))  // dump() below recurses once a level
        throw Error("GET " + path + ": " + nested_deeper_than());
      auto page = nlohmann::ordered_json::parse(body, nullptr, false);
      if (!page.is_object() || !page.contains("items") || !page["items"].is_array() ||
          (page.contains("nextCursor") && !page["nextCursor"].is_string()))
        throw Error("GET " + path + ": not the change API's answer ({\"items\": [...], \"nextCursor\": \"...\"})");
      const auto& items = page["items"];
      for (size_t i = 0; i < items.size(); ++i) {
        out.push_back(items[i].dump());
        try {
          model::ChangeSet::from_json(out.back());  // untrusted: a change set, or an error naming it
        } catch (const Error& e) {
          throw Error("GET " + path + ": item " + std::to_string(i) + ": " + e.what());
        }
      }
      cursor = page.contains("nextCursor") ? page["nextCursor"].get<std::string>() : "";
    } while (!cursor.empty());
    std::reverse(out.begin(), out.end());
    return out;
  };
  src.follow = [client](const Param& param, const std::string& last_id, const Print& print) {
    std::string resume = last_id;
    while (!g_follow_stop.load()) {
      try {
        std::string q = query_of(param, {"since", "until"});
        if (!resume.empty()) q += (q.empty() ? "" : "&") + std::string("lastEventId=") + ApiClient::escape(resume);
        client->stream(
            "/api/v1/changes/stream?" + q,
            [&](const std::string& id, const std::string& data) {
              resume = id;
              model::ChangeSet::from_json(data);  // untrusted: a change set, or skipped with a warning
              print(data);
            },
            g_follow_stop);
      } catch (const Error& e) {  // the server went away: resume after the last id once it is back
        if (g_follow_stop.load()) break;
        spdlog::warn("{}; reconnecting in 2 s", e.what());
        for (int i = 0; i < 20 && !g_follow_stop.load(); ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  };
  return src;
}

}  // namespace

int run_history(const Args& args) {
  Source source = args.has("--server") ? server_source(args) : state_source(args);
  auto param = [&](const std::string& name) -> std::optional<std::string> {
    if (name == "since") return args.get("--since", "1h");
    for (const auto& [key, option] : kFilterOptions)
      if (key == name && args.has(option)) return args.get(option);
    return std::nullopt;
  };
  const std::string output = args.get("--output", "text");
  auto rows = source.window(param);
  if (args.has("--summary")) {
    // One line per object, everything that changed to it in the window,
    // oldest to newest; objects in the order they first changed.
    std::vector<std::string> order;
    std::map<std::string, std::vector<model::ChangeSet>> by_object;
    for (const auto& json : rows) {
      auto cs = model::ChangeSet::from_json(json);
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
  std::string last_id;
  auto print = [&](const std::string& json) {
    if (output == "json")
      std::cout << json << "\n";
    else if (output == "yaml")
      std::cout << to_yaml(json);
    else
      print_line(model::ChangeSet::from_json(json));
    std::cout.flush();
  };
  for (const auto& json : rows) print(json);
  if (!args.has("--follow")) return 0;
  // New change sets as they are kept, until SIGINT/SIGTERM.
  std::signal(SIGINT, on_follow_signal);
  std::signal(SIGTERM, on_follow_signal);
  if (!rows.empty()) last_id = model::ChangeSet::from_json(rows.back()).id;
  source.follow(param, last_id, print);
  return 0;
}

}  // namespace kubetrail::cli
