#include "config/config.hpp"

#include <re2/re2.h>
#include <toml.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/json_depth.hpp"

namespace kubetrail::config {

namespace {

using value = toml::basic_value<toml::discard_comments, std::map, std::vector>;

std::string where(const value& v) {
  auto loc = v.location();
  return loc.file_name() + ":" + std::to_string(loc.line());
}

std::string type_name(const value& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return "a boolean";
    case toml::value_t::integer: return "an integer";
    case toml::value_t::floating: return "a float";
    case toml::value_t::string: return "a string";
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    case toml::value_t::empty: return "nothing";
    default: return "a date/time";
  }
}

// Reads one TOML table, remembering which keys were used so that leftovers
// (typos) are reported with the list of known keys.
class TableReader {
 public:
  TableReader(const value& table, std::string prefix) : table_(table), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const value& at, std::string_view key, std::string_view what) const {
    throw Error(where(at) + ": key \"" + prefix_ + std::string(key) + "\": " + std::string(what));
  }

  const value* get(std::string_view key) {
    known_.insert(std::string(key));
    auto& t = table_.as_table();
    auto it = t.find(std::string(key));
    return it == t.end() ? nullptr : &it->second;
  }

  void read(std::string_view key, std::string& out) {
    if (auto v = get(key)) {
      if (!v->is_string()) fail(*v, key, "expected a string, got " + type_name(*v));
      out = v->as_string().str;
    }
  }
  void read(std::string_view key, bool& out) {
    if (auto v = get(key)) {
      if (!v->is_boolean()) fail(*v, key, "expected true or false, got " + type_name(*v));
      out = v->as_boolean();
    }
  }
  void read(std::string_view key, uint32_t& out, uint32_t min = 0, uint32_t max = UINT32_MAX) {
    if (auto v = get(key)) {
      if (!v->is_integer()) fail(*v, key, "expected an integer, got " + type_name(*v));
      auto i = v->as_integer();
      if (i < static_cast<int64_t>(min) || i > static_cast<int64_t>(max))
        fail(*v, key,
             "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", got " +
                 std::to_string(i));
      out = static_cast<uint32_t>(i);
    }
  }
  void read(std::string_view key, std::vector<std::string>& out) {
    if (auto v = get(key)) {
      if (!v->is_array()) fail(*v, key, "expected an array of strings, got " + type_name(*v));
      out.clear();
      for (const auto& e : v->as_array()) {
        if (!e.is_string()) fail(e, key, "expected an array of strings, found " + type_name(e) + " in it");
        out.push_back(e.as_string().str);
      }
    }
  }
  void read_types(std::string_view key, std::vector<model::ChangeType>& out) {
    std::vector<std::string> names;
    read(key, names);
    if (!get(key)) return;
    out.clear();
    for (const auto& n : names) {
      auto t = model::parse_change_type(n);
      if (!t || *t == model::ChangeType::snapshot)
        fail(*get(key), key, "unknown event type \"" + n + "\" (expected Added, Modified or Deleted)");
      out.push_back(*t);
    }
  }
  void read_paths(std::string_view key, std::vector<std::string>& out) {
    read(key, out);
    for (const auto& p : out) {
      try {
        model::PathPattern::parse(p);
      } catch (const Error& e) {
        fail(*get(key), key, e.what());
      }
    }
  }
  void read_choice(std::string_view key, std::string& out, std::initializer_list<std::string_view> choices) {
    read(key, out);
    if (!get(key)) return;
    if (std::find(choices.begin(), choices.end(), out) != choices.end()) return;
    std::string list;
    for (auto c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
    fail(*get(key), key, "expected one of " + list + ", got \"" + out + "\"");
  }

  // Call last: any key not read is a mistake.
  void reject_unknown() const {
    for (const auto& [k, v] : table_.as_table()) {
      if (known_.count(k)) continue;
      std::string list;
      for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
      throw Error(where(v) + ": unknown key \"" + prefix_ + k + "\" (known keys here: " + list + ")");
    }
  }

 private:
  const value& table_;
  std::string prefix_;
  std::set<std::string> known_;
};

const value* table_at(TableReader& r, std::string_view key) {
  const value* v = r.get(key);
  if (v && !v->is_table()) r.fail(*v, key, "expected a table, got " + type_name(*v));
  return v;
}

nlohmann::json to_json(const value& v, const std::string& key_path) {
  switch (v.type()) {
    case toml::value_t::boolean: return v.as_boolean();
    case toml::value_t::integer: return v.as_integer();
    case toml::value_t::floating: return v.as_floating();
    case toml::value_t::string: return v.as_string().str;
    case toml::value_t::array: {
      auto a = nlohmann::json::array();
      for (const auto& e : v.as_array()) a.push_back(to_json(e, key_path));
      return a;
    }
    case toml::value_t::table: {
      auto o = nlohmann::json::object();
      for (const auto& [k, e] : v.as_table()) o[k] = to_json(e, key_path + "." + k);
      return o;
    }
    default:
      throw Error(where(v) + ": key \"" + key_path +
                  "\": dates and times are not supported in plugin config; "
                  "use a string");
  }
}

void read_handler(const value& t, size_t index, Config& cfg) {
  std::string prefix = "handlers[" + std::to_string(index) + "].";
  if (!t.is_table()) throw Error(where(t) + ": handlers[" + std::to_string(index) + "] must be a table");
  TableReader r(t, prefix);
  HandlerConfig h;
  h.where = where(t);
  r.read("name", h.name);
  r.read("plugin", h.plugin);
  if (h.name.empty()) throw Error(h.where + ": key \"" + prefix + "name\": a handler needs a non-empty name");
  if (h.plugin.empty())
    throw Error(h.where + ": key \"" + prefix + "plugin\": handler \"" + h.name + "\" needs a plugin (name or path)");
  if (auto c = table_at(r, "config")) h.config = to_json(*c, prefix + "config");
  if (auto rt = table_at(r, "retry")) {
    TableReader rr(*rt, prefix + "retry.");
    rr.read("attempts", h.retry.attempts, 1, 1000);
    rr.read("initial_ms", h.retry.initial_ms, 1);
    rr.read("max_ms", h.retry.max_ms, 1);
    rr.reject_unknown();
  }
  r.read("queue_size", h.queue_size, 1);
  r.read("batch_max", h.batch_max, 1, 10000);
  r.read("batch_wait_ms", h.batch_wait_ms);
  if (const value* every = r.get("inventory_every")) {
    std::optional<std::chrono::seconds> d;
    if (every->is_string()) d = parse_duration(every->as_string().str);
    if (!d || d->count() < 1 || *d > std::chrono::hours(24 * 366))
      r.fail(*every, "inventory_every",
             "expected a duration from \"1s\" to \"366d\", like \"6h\" or \"1h30m\"" +
                 (every->is_string() ? ", got \"" + every->as_string().str.substr(0, 40) + "\""
                                     : ", got " + type_name(*every)));
    h.inventory_every = *d;
  }
  r.reject_unknown();
  for (const auto& other : cfg.handlers)
    if (other.name == h.name)
      throw Error(h.where + ": key \"" + prefix + "name\": handler \"" + h.name + "\" is defined twice (first at " +
                  other.where + ")");
  cfg.handlers.push_back(std::move(h));
}

// match.where: `{ reason = ["BackOff", "/^Failed/"], "involvedObject.kind" = "Pod" }`;
// a dotted TOML key (involvedObject.kind = ...) is a nested table: flattened.
void read_where(TableReader& r, const value& table, const std::string& at,
                std::vector<std::pair<std::string, std::vector<std::string>>>& out) {
  for (const auto& [name, v] : table.as_table()) {
    const std::string path = at.empty() ? name : at + "." + name;
    const std::string key = "where." + path;
    if (name.empty() || name.find_first_of("[]*") != std::string::npos)
      r.fail(v, key, "not a dotted path of the object's fields, like involvedObject.kind");
    if (v.is_table()) {
      read_where(r, v, path, out);
      continue;
    }
    std::vector<std::string> wanted;
    if (v.is_string()) {
      wanted.push_back(v.as_string().str);
    } else if (v.is_array()) {
      for (const auto& e : v.as_array()) {
        if (!e.is_string()) r.fail(e, key, "expected strings (exact values or /regex/), got " + type_name(e));
        wanted.push_back(e.as_string().str);
      }
    } else {
      r.fail(v, key, "expected a string or a list of strings (exact values or /regex/), got " + type_name(v));
    }
    if (wanted.empty()) r.fail(v, key, "an empty list matches nothing");
    for (const auto& w : wanted) {
      if (!is_where_regex(w)) continue;
      std::string problem;
      if (!compile_where_regex(w, problem)) r.fail(v, key, problem);
    }
    out.emplace_back(path, std::move(wanted));
  }
}

}  // namespace

// A pattern is the config's, not an object's; a bound keeps a typo of a
// paste from becoming a megabyte automaton.
constexpr size_t kMaxWhereRegex = 256;

std::unique_ptr<const re2::RE2> compile_where_regex(std::string_view slashed, std::string& problem) {
  if (slashed.size() > kMaxWhereRegex + 2) {
    problem = "regular expression " + std::string(slashed.substr(0, 40)) + "... is too long (at most " +
              std::to_string(kMaxWhereRegex) + " characters)";
    return nullptr;
  }
  RE2::Options options;
  options.set_log_errors(false);    // the error is the config's, with its file and key
  options.set_never_capture(true);  // found or not is all routing asks
  auto re = std::make_unique<const RE2>(slashed.substr(1, slashed.size() - 2), options);
  if (!re->ok()) {
    problem = "bad regular expression " + std::string(slashed) + ": " + re->error() + " (RE2 syntax, as Go's regexp)";
    return nullptr;
  }
  return re;
}

std::string unknown_handler(const Config& cfg, std::string_view name) {
  if (std::any_of(cfg.handlers.begin(), cfg.handlers.end(), [&](const HandlerConfig& h) { return h.name == name; }))
    return {};
  std::string known;
  for (const auto& h : cfg.handlers) known += (known.empty() ? "" : ", ") + h.name;
  return "no handler named \"" + std::string(name) + "\" (defined handlers: " + (known.empty() ? "none" : known) + ")";
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  int64_t total = 0;
  for (size_t i = 0; i < text.size();) {
    int64_t n = 0;
    size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 9; ++i, ++digits)
      n = n * 10 + (text[i] - '0');
    if (digits == 0 || i >= text.size()) return std::nullopt;
    switch (text[i++]) {
      case 's': break;
      case 'm': n *= 60; break;
      case 'h': n *= 3600; break;
      case 'd': n *= 86400; break;
      default: return std::nullopt;
    }
    total += n;
  }
  return std::chrono::seconds(total);
}

namespace {

void read_route(const value& t, size_t index, Config& cfg) {
  std::string prefix = "routes[" + std::to_string(index) + "].";
  if (!t.is_table()) throw Error(where(t) + ": routes[" + std::to_string(index) + "] must be a table");
  TableReader r(t, prefix);
  RouteConfig route;
  route.where = where(t);
  r.read("name", route.name);
  if (route.name.empty()) route.name = "routes[" + std::to_string(index) + "]";
  if (route.name.starts_with(inventory_route_name("")))
    r.fail(*r.get("name"), "name",
           "\"" + route.name + "\": names beginning with \"inventory/\" are kept for handlers' inventories");
  if (auto m = table_at(r, "match")) {
    route.has_match = true;
    TableReader mr(*m, prefix + "match.");
    mr.read("resources", route.match.resources);
    mr.read("namespaces", route.match.namespaces);
    mr.read_types("types", route.match.types);
    mr.read_paths("paths", route.match.paths);
    if (auto w = table_at(mr, "where")) {
      read_where(mr, *w, "", route.match.where);
      // TOML tables keep no order: by path, so that field_paths and the
      // change sets' fields come out the same on every run.
      std::sort(route.match.where.begin(), route.match.where.end());
    }
    mr.reject_unknown();
  }
  r.read("chain", route.chain);
  const value* chain = r.get("chain");
  if (!chain || route.chain.empty())
    throw Error(route.where + ": key \"" + prefix + "chain\": a route needs a non-empty chain of handler names");
  for (const auto& name : route.chain)
    if (std::string why = unknown_handler(cfg, name); !why.empty()) r.fail(*chain, "chain", why);
  r.reject_unknown();
  // Delivery keys chains by route, and logs, metrics and dead letters name
  // routes: two with one name would be told apart by nothing.
  for (const auto& other : cfg.routes)
    if (other.name == route.name)
      throw Error(route.where + ": key \"" + prefix + "name\": route \"" + route.name +
                  "\" is defined twice (first at " + other.where + ")");
  cfg.routes.push_back(std::move(route));
}

Config from_value(const value& root, const std::string& source) {
  Config cfg;
  cfg.source = source;
  TableReader top(root, "");
  if (auto t = table_at(top, "cluster")) {
    TableReader r(*t, "cluster.");
    r.read("name", cfg.cluster.name);
    r.read("kubeconfig", cfg.cluster.kubeconfig);
    r.read("context", cfg.cluster.context);
    r.read_choice("compression", cfg.cluster.compression, {"auto", "gzip", "none"});
    r.reject_unknown();
    if (cfg.cluster.name.empty()) r.fail(*t, "name", "must not be empty (it is put in every change set)");
  }
  if (auto t = table_at(top, "watch")) {
    TableReader r(*t, "watch.");
    r.read("resources", cfg.watch.resources);
    r.read("namespaces", cfg.watch.namespaces);
    r.read("exclude_namespaces", cfg.watch.exclude_namespaces);
    r.read("label_selector", cfg.watch.label_selector);
    r.read("field_selector", cfg.watch.field_selector);
    r.read_types("events", cfg.watch.events);
    r.read("rediscover_s", cfg.watch.rediscover_s);
    r.read("max_event_mb", cfg.watch.max_event_mb, 1, 1024);
    for (const auto& name : cfg.watch.resources)
      if (name.find('*') != std::string::npos &&
          (!name.starts_with("*.") || name.size() < 3 || name.find('*', 1) != std::string::npos))
        r.fail(*r.get("resources"), "resources",
               "\"" + name + "\": a pattern must be \"*.GROUP\" (every resource of one API group)");
    r.reject_unknown();
  }
  if (auto t = table_at(top, "diff")) {
    TableReader r(*t, "diff.");
    r.read_paths("ignore_paths", cfg.diff.ignore_paths);
    r.read_paths("redact_paths", cfg.diff.redact_paths);
    r.read("include_status", cfg.diff.include_status);
    r.read("include_objects", cfg.diff.include_objects);
    r.read("redaction_key_file", cfg.redaction_key_file);
    r.read("redaction_key_env", cfg.redaction_key_env);
    if (!cfg.redaction_key_file.empty() && !cfg.redaction_key_env.empty())
      r.fail(*r.get("redaction_key_env"), "redaction_key_env", "set one of redaction_key_file and redaction_key_env");
    r.reject_unknown();
  }
  if (auto t = table_at(top, "state")) {
    TableReader r(*t, "state.");
    r.read("path", cfg.state.path);
    r.read("retention_hours", cfg.state.retention_hours, 1);
    r.read("outbox_max_mb", cfg.state.outbox_max_mb, 1);
    r.reject_unknown();
  }
  if (auto t = table_at(top, "history")) {
    TableReader r(*t, "history.");
    r.read("retention_days", cfg.history.retention_days, 1, 3650);
    r.read("max_mb", cfg.history.max_mb, 1);
    r.reject_unknown();
  }
  if (auto t = table_at(top, "server")) {
    TableReader r(*t, "server.");
    r.read("listen", cfg.server.listen);
    r.read("stall_timeout_s", cfg.server.stall_timeout_s, 1);
    r.read("api", cfg.server.api);
    r.read("token_env", cfg.server.token_env);
    r.read("token_file", cfg.server.token_file);
    r.reject_unknown();
  }
  if (auto t = table_at(top, "leader_election")) {
    TableReader r(*t, "leader_election.");
    r.read("enabled", cfg.leader_election.enabled);
    r.read("namespace", cfg.leader_election.lease_namespace);
    r.read("lease_name", cfg.leader_election.lease_name);
    r.read("identity", cfg.leader_election.identity);
    auto& le = cfg.leader_election;
    r.read("lease_duration_s", le.lease_duration_s, 1, 3600);
    r.read("renew_deadline_s", le.renew_deadline_s, 1, 3600);
    r.read("retry_period_s", le.retry_period_s, 1, 3600);
    // client-go's rule: the leader must be able to retry within its renew
    // deadline, and give up before a follower may take the lease.
    if (le.lease_duration_s <= le.renew_deadline_s)
      r.fail(r.get("lease_duration_s") ? *r.get("lease_duration_s") : *t, "lease_duration_s",
             "must be greater than renew_deadline_s (" + std::to_string(le.renew_deadline_s) + ")");
    if (le.renew_deadline_s * 10 <= le.retry_period_s * 12)
      r.fail(r.get("renew_deadline_s") ? *r.get("renew_deadline_s") : *t, "renew_deadline_s",
             "must be greater than 1.2 x retry_period_s (" + std::to_string(le.retry_period_s) + ")");
    r.reject_unknown();
  }
  if (auto t = table_at(top, "plugins")) {
    TableReader r(*t, "plugins.");
    r.read("dir", cfg.plugins_dir);
    r.reject_unknown();
  }
  if (auto t = table_at(top, "log")) {
    TableReader r(*t, "log.");
    r.read_choice("level", cfg.log.level, {"trace", "debug", "info", "warn", "error"});
    r.read_choice("format", cfg.log.format, {"text", "json"});
    r.reject_unknown();
  }
  if (auto h = top.get("handlers")) {
    if (!h->is_array()) top.fail(*h, "handlers", "expected [[handlers]] tables, got " + type_name(*h));
    size_t i = 0;
    for (const auto& e : h->as_array()) read_handler(e, i++, cfg);
  }
  if (auto rt = top.get("routes")) {
    if (!rt->is_array()) top.fail(*rt, "routes", "expected [[routes]] tables, got " + type_name(*rt));
    size_t i = 0;
    for (const auto& e : rt->as_array()) read_route(e, i++, cfg);
  }
  // The fields routes match on travel in each change set (see DiffOptions).
  for (const auto& route : cfg.routes)
    for (const auto& [path, values] : route.match.where)
      if (std::find(cfg.diff.field_paths.begin(), cfg.diff.field_paths.end(), path) == cfg.diff.field_paths.end())
        cfg.diff.field_paths.push_back(path);
  top.reject_unknown();

  // A handler in no route would never receive anything: almost certainly a
  // mistake, so say so rather than run silently.
  for (const auto& h : cfg.handlers) {
    bool used = std::any_of(cfg.routes.begin(), cfg.routes.end(), [&](const RouteConfig& r) {
      return std::find(r.chain.begin(), r.chain.end(), h.name) != r.chain.end();
    });
    if (!used)
      throw Error(h.where + ": handler \"" + h.name + "\" is in no route's chain, so it would receive nothing");
  }
  return cfg;
}

// Where `text` stops being UTF-8, or npos. TOML files are UTF-8, and
// toml11 3.7 (Debian's) reads past its buffer on a literal string holding
// invalid UTF-8 (found by fuzz/fuzz_config; tests/fuzz-regressions/config/):
// such a file is refused before toml11 sees it.
size_t invalid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 4;
    if (n == 4 || c == 0xc0 || c == 0xc1 || c > 0xf4 || i + n >= text.size() + (n ? 0 : 1)) return i;
    uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (size_t k = 1; k <= n; ++k) {
      auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

// toml11 parses arrays and inline tables recursively, a stack frame or
// more a level: 100,000 nested brackets in a config overflowed the stack.
// No kubetrail config, plugin tables included, nests anywhere near this.
constexpr size_t kMaxConfigDepth = 128;

// The byte offset of the bracket or brace at which arrays and inline
// tables in `text` nest deeper than kMaxConfigDepth, or npos. Strings (basic
// and literal, one-line and multi-line) and comments are skipped; table
// headers ([a], [[a]]) count while they are open, which is harmless. Linear;
// anything malformed is toml11's to report.
size_t toml_depth_exceeded_at(std::string_view text) {
  size_t depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '#') {
      i = text.find('\n', i);
      if (i == std::string_view::npos) break;
    } else if (c == '"' || c == '\'') {
      const bool basic = c == '"';
      const std::string_view multi = basic ? R"(""")" : "'''";
      const bool is_multi = text.substr(i, 3) == multi;
      const std::string_view close = is_multi ? multi : text.substr(i, 1);
      for (i += close.size(); i < text.size(); ++i) {
        if (basic && text[i] == '\\') {
          ++i;  // the escaped character
        } else if (!is_multi && text[i] == '\n') {
          break;  // a one-line string ends at the line's end at the latest (toml11 says what is wrong)
        } else if (text.substr(i, close.size()) == close) {
          i += close.size() - 1;
          break;
        }
      }
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxConfigDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

// A TOML literal for `text` as the override's type: parsed back by toml11
// under the variable's name, so that every later error about the value
// says where it came from ("$KUBETRAIL_SERVER_LISTEN:1: key ...").
std::string toml_literal(std::string_view text, EnvOverride::Kind kind, std::string_view variable) {
  // A TOML basic string: JSON's escapes (append_json_string) would leave
  // DEL bare, which TOML refuses.
  auto quoted = [](std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
    return out + "\"";
  };
  switch (kind) {
    case EnvOverride::Kind::boolean:
      if (text == "true" || text == "false") return std::string(text);
      throw Error("environment variable " + std::string(variable) + ": expected true or false, got \"" +
                  std::string(text) + "\"");
    case EnvOverride::Kind::list: {
      std::string out = "[";
      size_t start = 0;
      while (start <= text.size()) {
        size_t comma = std::min(text.find(',', start), text.size());
        auto item = text.substr(start, comma - start);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (!item.empty()) out += (out.size() > 1 ? ", " : "") + quoted(item);
        start = comma + 1;
      }
      return out + "]";
    }
    case EnvOverride::Kind::string: break;
  }
  return quoted(text);
}

void apply_overrides(value& root, const std::map<std::string, std::string>& env) {
  for (const auto& o : env_override_keys()) {
    auto it = env.find(std::string(o.variable));
    if (it == env.end()) continue;
    std::istringstream in("v = " + toml_literal(it->second, o.kind, o.variable) + "\n");
    value parsed = toml::parse<toml::discard_comments, std::map, std::vector>(in, "$" + std::string(o.variable));
    auto& top = root.as_table();
    auto table = top.find(std::string(o.table));
    if (table == top.end()) table = top.emplace(std::string(o.table), value(toml::table{})).first;
    if (!table->second.is_table())
      throw Error("environment variable " + std::string(o.variable) + " overrides [" + std::string(o.table) + "] " +
                  std::string(o.key) + ", but " + std::string(o.table) + " is not a table in the config");
    table->second.as_table()[std::string(o.key)] = parsed.as_table().at("v");
  }
}

}  // namespace

const std::vector<EnvOverride>& env_override_keys() {
  using K = EnvOverride::Kind;
  static const std::vector<EnvOverride> keys = {
      {"KUBETRAIL_CLUSTER_NAME", "cluster", "name", K::string, "the cluster's name in every change set"},
      {"KUBETRAIL_WATCH_NAMESPACES", "watch", "namespaces", K::list, "namespaces to watch, comma-separated"},
      {"KUBETRAIL_STATE_PATH", "state", "path", K::string, "the state database (\"\" keeps nothing)"},
      {"KUBETRAIL_SERVER_LISTEN", "server", "listen", K::string, "metrics and probes address (\"\" = off)"},
      {"KUBETRAIL_LEADER_ELECTION", "leader_election", "enabled", K::boolean, "true: only the lease holder delivers"},
      {"KUBETRAIL_LEADER_ELECTION_NAMESPACE", "leader_election", "namespace", K::string, "the Lease's namespace"},
      {"KUBETRAIL_LOG_LEVEL", "log", "level", K::string, "trace, debug, info, warn or error"},
      {"KUBETRAIL_LOG_FORMAT", "log", "format", K::string, "text or json"},
  };
  return keys;
}

std::map<std::string, std::string> environment_overrides(char** environ) {
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with("KUBETRAIL_")) continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

Config parse(std::string_view toml_text, const std::string& source_name,
             const std::map<std::string, std::string>& env) {
  if (size_t bad = invalid_utf8(toml_text); bad != std::string_view::npos) {
    size_t line =
        1 + static_cast<size_t>(std::count(toml_text.begin(), toml_text.begin() + static_cast<long>(bad), '\n'));
    throw Error(source_name + ":" + std::to_string(line) + ": not UTF-8 at byte offset " + std::to_string(bad) +
                " (a TOML file is UTF-8)");
  }
  if (size_t deep = toml_depth_exceeded_at(toml_text); deep != std::string_view::npos) {
    size_t line =
        1 + static_cast<size_t>(std::count(toml_text.begin(), toml_text.begin() + static_cast<long>(deep), '\n'));
    throw Error(source_name + ":" + std::to_string(line) + ": arrays and inline tables " +
                nested_deeper_than(kMaxConfigDepth) + " at byte offset " + std::to_string(deep));
  }
  std::istringstream in{std::string(toml_text)};
  value root;
  try {
    root = toml::parse<toml::discard_comments, std::map, std::vector>(in, source_name);
  } catch (const toml::syntax_error& e) {
    throw Error("invalid TOML in " + source_name + ":\n" + e.what());
  }
  try {
    apply_overrides(root, env);
    return from_value(root, source_name);
  } catch (const toml::exception& e) {
    throw Error("invalid config in " + source_name + ":\n" + e.what());
  }
}

Config load_file(const std::filesystem::path& path, const std::map<std::string, std::string>& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read config file " + path.string() + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path.string(), env);
}

std::string_view default_config_text() {
  return R"toml(# The built-in configuration: every change set as one readable line on stdout.
[cluster]
name = "default"

[[handlers]]
name = "stdout"
plugin = "log"
config = { format = "text" }

[[routes]]
chain = ["stdout"]
)toml";
}

std::string read_secret(const std::string& env, const std::string& file, const std::string& env_key,
                        const std::string& file_key) {
  if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (!v || !*v) throw Error(env_key + ": environment variable " + env + " is not set or empty");
    return v;
  }
  if (file.empty()) return {};
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  std::string secret = ss.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) throw Error(file_key + ": " + file + " cannot be read or is empty");
  return secret;
}

}  // namespace kubetrail::config
