// kubetrail's configuration (TOML, see DESIGN.md and README.md): parsed into
// plain values, fully checked at load time. Every error names the file, the
// line, the key and what was expected; unknown keys are errors, so a typo
// never passes silently.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/change_set.hpp"
#include "model/diff_options.hpp"
#include "model/path.hpp"

namespace re2 {
class RE2;
}

namespace kubetrail::config {

struct ClusterConfig {
  std::string name = "default";
  std::string kubeconfig;  // "" = in-cluster, then $KUBECONFIG, then ~/.kube/config
  std::string context;
  // Whether run asks the API server to gzip its responses: "auto" (not on
  // loopback or in-cluster, where inflating costs more than the bytes it
  // saves; yes elsewhere), "gzip", "none".
  std::string compression = "auto";
};

struct WatchConfig {
  std::vector<std::string> resources;
  std::vector<std::string> namespaces;  // empty = all
  std::vector<std::string> exclude_namespaces;
  std::string label_selector;
  std::string field_selector;
  std::vector<model::ChangeType> events{model::ChangeType::added, model::ChangeType::modified,
                                        model::ChangeType::deleted};
  uint32_t rediscover_s = 300;  // re-read discovery this often (0 = only at start and on SIGHUP)
  uint32_t max_event_mb = 16;   // a watch event larger than this ends the watch with an error (memory bound)
};

struct StateConfig {
  std::string path = "/var/lib/kubetrail/state.db";  // "" = keep nothing across restarts
  // Outbox retention: delivered entries (which guard their ids against a
  // second delivery) and dead letters are kept this long, and the outbox
  // is held under this size by dropping the oldest of them. Pending
  // entries are never dropped.
  uint32_t retention_hours = 168;
  uint32_t outbox_max_mb = 256;
};

// Change history (kept beside the state store; off when it is off).
struct HistoryConfig {
  uint32_t retention_days = 14;
  uint32_t max_mb = 1024;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:9090";  // "" = off
  uint32_t stall_timeout_s = 180;         // /healthz fails when a watch is silent longer
  // The change API (/api/v1/...) and the timeline page (/ui). On a loopback
  // address they are open; anywhere else they need a bearer token (from the
  // environment variable token_env, or the first line of token_file) and
  // are off without one. /metrics and the probes stay open for scraping.
  bool api = true;
  std::string token_env, token_file;
};

struct LeaderElectionConfig {
  bool enabled = false;
  std::string lease_namespace = "kubetrail";
  std::string lease_name = "kubetrail";
  std::string identity;  // "" = $POD_NAME or the host name, plus random hex
  // client-go's defaults; lease > renew deadline > 1.2 x retry period.
  uint32_t lease_duration_s = 15;
  uint32_t renew_deadline_s = 10;
  uint32_t retry_period_s = 2;
};

struct LogConfig {
  std::string level = "info";   // trace, debug, info, warn, error
  std::string format = "text";  // text, json
};

struct RetryPolicy {
  uint32_t attempts = 5;
  uint32_t initial_ms = 500;
  uint32_t max_ms = 60000;
};

struct HandlerConfig {
  std::string name;
  std::string plugin;  // a name in the plugins dir, or a path to a .so
  nlohmann::json config = nlohmann::json::object();
  RetryPolicy retry;
  uint32_t queue_size = 10000;
  // Change sets per call to a plugin that declares KUBETRAIL_CAP_BATCH. 0
  // (the default): whatever is queued, up to kAutoBatchMax - nothing waits
  // to fill a batch, but events that arrive together are handed over (and
  // the log plugin flushes) once (issue 15).
  uint32_t batch_max = 0;
  static constexpr uint32_t kAutoBatchMax = 256;
  uint32_t batch_wait_ms = 0;
  // Inventory mode: every this long, a snapshot of every object routed to
  // this handler, as Snapshot change sets (0: none). "6h", "30m", "1h30m".
  std::chrono::seconds inventory_every{0};
  std::string where;  // "file:line" of the [[handlers]] entry, for messages
};

struct RouteMatch {
  std::vector<std::string> resources;  // plural, kind or plural.group
  std::vector<std::string> namespaces;
  std::vector<model::ChangeType> types;
  std::vector<std::string> paths;  // path patterns (model/path.hpp)
  // `where`: a dotted path of the object's fields and the values it may
  // have, each exact or "/regex/" (found anywhere in the value); every path
  // must match one of its values.
  std::vector<std::pair<std::string, std::vector<std::string>>> where;
};

// The route delivering a handler's inventory: its Snapshot change sets go
// to that handler alone (route/route.hpp). User routes cannot take the name.
inline std::string inventory_route_name(std::string_view handler) { return "inventory/" + std::string(handler); }

// A duration as Go and kubectl write them: "90s", "30m", "6h", "1h30m",
// "7d" (whole units only). nullopt when the text is not one.
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

// Whether a `where` value is a regular expression: "/.../".
inline bool is_where_regex(std::string_view v) { return v.size() >= 2 && v.front() == '/' && v.back() == '/'; }
// A `where` value's /regex/ compiled as routing matches it - RE2 syntax (as
// Go's regexp and Prometheus), matched in time linear in the value, which
// is an object's to choose - or nullptr with `problem` saying why not.
std::unique_ptr<const re2::RE2> compile_where_regex(std::string_view slashed, std::string& problem);

struct RouteConfig {
  std::string name;        // optional; "routes[N]" otherwise
  bool has_match = false;  // no match = every change set
  RouteMatch match;
  std::vector<std::string> chain;  // handler names, in order
  std::string where;
};

struct Config {
  std::string source;  // file name, or "<built-in>"
  ClusterConfig cluster;
  WatchConfig watch;
  HistoryConfig history;
  model::DiffOptions diff;
  // Where the redaction key comes from ([diff]): a file (a mounted Secret:
  // the same key on every replica) or an environment variable; neither: the
  // state store's own key (run), or a random one per process.
  std::string redaction_key_file, redaction_key_env;
  StateConfig state;
  ServerConfig server;
  LeaderElectionConfig leader_election;
  std::string plugins_dir;  // "" = beside the executable
  LogConfig log;
  std::vector<HandlerConfig> handlers;
  std::vector<RouteConfig> routes;
};

// Whether a handler of that name is configured; "" when it is, else the
// message naming it and the handlers that are ("no handler named "x"
// (defined handlers: a, b)").
std::string unknown_handler(const Config& cfg, std::string_view name);

// Throws kubetrail::Error with "FILE:LINE: ..." messages.
// KUBETRAIL_* environment variables that override config keys, for a
// container whose config comes from a ConfigMap shared by every replica:
// the value is read as the key's type (a string as is; true/false; a
// comma-separated list) and checked by the same rules as the file's, and an
// error names the variable. Built by environment_overrides() from environ.
struct EnvOverride {
  std::string_view variable;  // "KUBETRAIL_SERVER_LISTEN"
  std::string_view table;     // "server"
  std::string_view key;       // "listen"
  enum class Kind { string, boolean, list } kind;
  std::string_view description;
};
const std::vector<EnvOverride>& env_override_keys();
// The KUBETRAIL_* overrides set in `environ` (variable -> value); names not
// in env_override_keys() are left to the caller (the CLI owns a few).
std::map<std::string, std::string> environment_overrides(char** environ);

Config load_file(const std::filesystem::path& path, const std::map<std::string, std::string>& env = {});
Config parse(std::string_view toml_text, const std::string& source_name,
             const std::map<std::string, std::string>& env = {});

// The configuration used when none is given: print every change set as a
// readable line to stdout.
std::string_view default_config_text();

// The secret a pair of keys names: environment variable `env`'s value,
// else file `file`'s content (its line end dropped); "" when both are "".
// A named variable or file that is missing or empty is an error naming the
// key (`env_key` / `file_key`, as the user wrote them). Never logged.
std::string read_secret(const std::string& env, const std::string& file, const std::string& env_key,
                        const std::string& file_key);

}  // namespace kubetrail::config
