// kubetrail's entry point: subcommands and their options (CLI11), help and
// shell completion from one table.
#include <kubetrail/plugin.h>

#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <csignal>
#include <iostream>
#include <map>
#include <set>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/error.hpp"
#include "deliver/deliver.hpp"
#include "plugin/plugin_host.hpp"
#include "state/history.hpp"
#include "version.hpp"

namespace kubetrail::cli {

namespace {

// Every subcommand and option, once: the parser (CLI11), each
// subcommand's --help and the bash completion are all made from this table,
// so they cannot disagree. What an option parses to lands in Args (the
// subcommands' one input), under its long name.
enum class Value { none, file, dir, text, choice };
struct OptionSpec {
  const char* name;  // "--config" or "-v,--verbose"
  Value value;       // none: a flag
  const char* type;  // "FILE", "LEVEL", ...
  const char* description;
  const char* env = nullptr;  // KUBETRAIL_* variable read when the option is absent
  std::vector<std::string> choices = {};
};
struct CommandSpec {
  const char* name;
  const char* description;
  std::vector<OptionSpec> options;
  const char* positional = nullptr;  // its name in help: "RECORDING" (one or more), "MANIFEST" (two)
  const char* positional_help = nullptr;
  size_t positional_min = 0, positional_max = 0;  // max 0: any number
  int (*run)(const Args&);
};

const std::string kConfigHelp = std::string("TOML config (default: ") + kSystemConfig +
                                " when present, else the built-in: every change set as a line on stdout)";
const OptionSpec kConfig{"--config", Value::file, "FILE", kConfigHelp.c_str(), "KUBETRAIL_CONFIG"};
const OptionSpec kPluginsDir{"--plugins-dir", Value::dir, "DIR",
                             "where NAME.so plugins are found (default: [plugins] dir, else beside kubetrail)",
                             "KUBETRAIL_PLUGINS_DIR"};
const OptionSpec kLogLevel{"--log-level",           Value::choice, "LEVEL",
                           "overrides [log] level", nullptr,       {"trace", "debug", "info", "warn", "error"}};
const OptionSpec kKubeconfig{"--kubeconfig", Value::file, "FILE",
                             "kubeconfig (default: [cluster] kubeconfig, in-cluster, $KUBECONFIG, ~/.kube/config)"};
const OptionSpec kContext{"--context", Value::text, "NAME", "kubeconfig context (default: [cluster] context)",
                          "KUBETRAIL_CONTEXT"};

const OptionSpec kServer{"--server", Value::text, "URL",
                         "ask a running kubetrail's change API instead (http://127.0.0.1:9090 through kubectl "
                         "port-forward)"};
const OptionSpec kTokenFile{"--token-file", Value::file, "FILE",
                            "the API's bearer token (default: $KUBETRAIL_TOKEN) when kubetrail asks for one"};

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> specs = {
      {"run",
       "watch the cluster: [watch] resources through the diff, routes and handlers until SIGINT/SIGTERM",
       {kConfig,
        kKubeconfig,
        kContext,
        kPluginsDir,
        kLogLevel,
        {"--reset-state", Value::none, "", "start from an empty state database (a fresh catch-up)"}},
       nullptr,
       nullptr,
       0,
       0,
       &run_daemon},
      {"replay",
       "feed recorded watch streams (kubectl get --watch --output-watch-events -o json) through diff, routes "
       "and handlers; no cluster needed",
       {kConfig,
        kPluginsDir,
        kLogLevel,
        {"--state", Value::file, "PATH", "keep the change sets in PATH-history too, for kubetrail history"}},
       "RECORDING",
       "files of `kubectl get RESOURCE --watch --output-watch-events -o json`, merged in resourceVersion order",
       1,
       0,
       &run_replay},
      {"diff",
       "semantic diff of two manifests (YAML or JSON); exit 0 equal, 1 different, 2 trouble",
       {kConfig, {"--output", Value::choice, "FORMAT", "text or json (default: text)", nullptr, {"text", "json"}}},
       "MANIFEST",
       "OLD NEW: the two manifest files (multi-document YAML pairs objects by identity)",
       2,
       2,
       &run_diff},
      {"check-config",
       "validate a config, load its plugins and create each handler as run would",
       {kConfig,
        kPluginsDir,
        kLogLevel,
        {"--schema-only", Value::none, "", "check against the plugins' schemas only (for CI without secrets)"}},
       nullptr,
       nullptr,
       0,
       0,
       &run_check_config},
      {"plugins",
       "list installed plugins",
       {{"--dir", Value::dir, "DIR", "the plugins directory (default: as --plugins-dir)", "KUBETRAIL_PLUGINS_DIR"},
        {"-v,--verbose", Value::none, "", "with each plugin's config schema"}},
       nullptr,
       nullptr,
       0,
       0,
       &run_plugins},
      {"rbac",
       "print the least-privilege RBAC for the config: list and watch of what [watch] resolves to through "
       "discovery, and the Lease with leader election",
       {kConfig,
        kKubeconfig,
        kContext,
        kLogLevel,
        {"--namespace", Value::text, "NS", "the service account's namespace (default: kubetrail)"},
        {"--service-account", Value::text, "NAME", "the service account (default: kubetrail)"}},
       nullptr,
       nullptr,
       0,
       0,
       &run_rbac},
      {"snapshot",
       "inventory on demand: list what [watch] resources resolve to and print every object as a Snapshot change "
       "set (JSON lines), or send a handler what its routes take, as its inventory_every would",
       {kConfig,
        kKubeconfig,
        kContext,
        kPluginsDir,
        kLogLevel,
        {"--handler", Value::text, "NAME",
         "take the snapshot for this handler (its routes choose the objects) and send it"},
        {"--print", Value::none, "", "with --handler: print the handler's snapshot instead of sending it"}},
       nullptr,
       nullptr,
       0,
       0,
       &run_snapshot},
      {"history",
       "what changed, when and by whom: the change sets a state store kept (oldest first), filtered",
       {{"--state", Value::file, "PATH",
         "the state store (default: [state] path of the config; its history is PATH-history)", "KUBETRAIL_STATE_PATH"},
        kConfig,
        {"--since", Value::text, "WHEN", "30s, 30m, 2h, 7d before now, or an RFC 3339 time (default: 1h)"},
        {"--until", Value::text, "WHEN", "as --since (default: now)"},
        {"-n,--namespace", Value::text, "NS", "only this namespace"},
        {"--kind,--resource", Value::text, "NAME", "only this resource: plural, plural.group or kind"},
        {"--name", Value::text, "NAME", "only objects of this name"},
        {"--actor", Value::text, "MANAGER", "only change sets made by this field manager"},
        {"--path", Value::text, "PATTERN", "only change sets touching this path (ignore_paths patterns)"},
        {"--type", Value::choice, "TYPE", "only Added, Modified or Deleted", nullptr, {"Added", "Modified", "Deleted"}},
        {"-o,--output",
         Value::choice,
         "FORMAT",
         "text (default), json (one change set per line) or yaml",
         nullptr,
         {"text", "json", "yaml"}},
        {"--summary", Value::none, "", "one line per object: everything that changed to it, oldest to newest"},
        {"-f,--follow", Value::none, "", "then print new change sets as they are kept, until interrupted"},
        kServer,
        kTokenFile},
       nullptr,
       nullptr,
       0,
       0,
       &run_history},
      {"dead-letters",
       "list, show, redeliver or drop the change sets a handler gave up on (over --server, or a --state no "
       "kubetrail has open)",
       {{"--state", Value::file, "PATH", "the state store (default: [state] path of the config)",
         "KUBETRAIL_STATE_PATH"},
        kConfig,
        kServer,
        kTokenFile,
        {"--handler", Value::text, "NAME", "only this handler's dead letters"},
        {"-o,--output",
         Value::choice,
         "FORMAT",
         "text (default) or json (the API's answer)",
         nullptr,
         {"text", "json"}}},
       "ACTION",
       "list | show ID... | redeliver ID... | drop ID...  (ID: the change set id, as list prints it)",
       1,
       0,
       &run_dead_letters},
      {"version", "print version and plugin ABI version", {}, nullptr, nullptr, 0, 0, &run_version},
  };
  return specs;
}

std::string long_name(const OptionSpec& o) {
  std::string n = o.name;
  return n.substr(n.rfind(',') == std::string::npos ? 0 : n.rfind(',') + 1);
}

// The parser for every subcommand, writing into `args`; `chosen` is set to
// the subcommand named on the command line.
void build(CLI::App& app, Args& args, const CommandSpec*& chosen, std::string& completion_shell) {
  app.set_help_flag("-h,--help", "print this help and exit");
  app.set_version_flag("--version", std::string("kubetrail ") + KUBETRAIL_VERSION);
  app.require_subcommand(0, 1);
  for (const auto& spec : commands()) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.description);
    sub->set_help_flag("-h,--help", "print this help and exit");
    sub->parse_complete_callback([&chosen, &spec] { chosen = &spec; });
    for (const auto& o : spec.options) {
      const std::string key = long_name(o);
      CLI::Option* opt = nullptr;
      if (o.value == Value::none) {
        opt = sub->add_flag_callback(
            o.name, [&args, key] { args.options[key] = ""; }, o.description);
      } else {
        opt = sub->add_option_function<std::string>(
            o.name, [&args, key](const std::string& v) { args.options[key] = v; }, o.description);
        opt->type_name(o.type);
        if (!o.choices.empty()) opt->check(CLI::IsMember(o.choices));
      }
      if (o.env) opt->envname(o.env);
    }
    if (spec.positional) {
      auto* pos = sub->add_option(spec.positional, args.positional, spec.positional_help)->type_name("");
      pos->expected(static_cast<int>(spec.positional_min), spec.positional_max ? static_cast<int>(spec.positional_max)
                                                                               : CLI::detail::expected_max_vector_size);
      pos->required(spec.positional_min > 0);
    }
    if (std::string_view(spec.name) == "run") {
      std::string env_help = "Environment (overrides the config's keys):\n";
      for (const auto& e : config::env_override_keys())
        env_help += "  " + std::string(e.variable) + std::string(38 - std::min<size_t>(36, e.variable.size()), ' ') +
                    "[" + std::string(e.table) + "] " + std::string(e.key) + ": " + std::string(e.description) + "\n";
      sub->footer(env_help);
    }
  }
  CLI::App* completion = app.add_subcommand("completion", "print a shell completion script: completion bash");
  completion->set_help_flag("-h,--help", "print this help and exit");
  completion->add_option("shell", completion_shell, "bash")->required()->check(CLI::IsMember({"bash"}));
  // Last: subcommands made before it would inherit it.
  app.footer(
      "Run 'kubetrail COMMAND --help' for a command's options. Config keys a container sets from the environment: "
      "see 'kubetrail run --help'.");
}

// A bash completion function made from commands(): subcommands, then each
// one's options, file and directory names for the options that take them
// and the choices of those that have them.
std::string bash_completion() {
  std::string names, cases, prev_cases;
  std::set<std::string> file_opts, dir_opts;
  std::map<std::string, std::string> choices;
  for (const auto& c : commands()) {
    names += std::string(names.empty() ? "" : " ") + c.name;
    std::string opts = "--help";
    for (const auto& o : c.options) {
      std::string n = o.name;
      for (size_t at = 0; at <= n.size();) {
        size_t comma = std::min(n.find(',', at), n.size());
        opts += " " + n.substr(at, comma - at);
        at = comma + 1;
      }
      if (o.value == Value::file) file_opts.insert(long_name(o));
      if (o.value == Value::dir) dir_opts.insert(long_name(o));
      if (!o.choices.empty()) {
        std::string words;
        for (const auto& ch : o.choices) words += (words.empty() ? "" : " ") + ch;
        choices[long_name(o)] = words;
      }
    }
    cases += std::string("    ") + c.name + ") opts=\"" + opts + "\"; files=" + (c.positional ? "1" : "0") + " ;;\n";
  }
  auto join = [](const std::set<std::string>& s) {
    std::string out;
    for (const auto& x : s) out += (out.empty() ? "" : "|") + x;
    return out;
  };
  prev_cases += "    " + join(file_opts) + ") COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n";
  prev_cases += "    " + join(dir_opts) + ") COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n";
  for (const auto& [opt, words] : choices)
    prev_cases += "    " + opt + ") COMPREPLY=($(compgen -W \"" + words + "\" -- \"$cur\")); return ;;\n";
  return "# bash completion for kubetrail (generated by `kubetrail completion bash`)\n"
         "_kubetrail() {\n"
         "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" opts=\"\" files=0\n"
         "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
         "    COMPREPLY=($(compgen -W \"" +
         names +
         " completion --help --version\" -- \"$cur\")); return\n"
         "  fi\n"
         "  case \"$prev\" in\n" +
         prev_cases +
         "  esac\n"
         "  case \"${COMP_WORDS[1]}\" in\n" +
         cases +
         "    completion) COMPREPLY=($(compgen -W \"bash\" -- \"$cur\")); return ;;\n"
         "  esac\n"
         "  if [[ \"$cur\" == -* || \"$files\" == 0 ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
         "  fi\n"
         "}\n"
         "complete -o filenames -F _kubetrail kubetrail\n";
}

}  // namespace

int run_version(const Args&) {
  std::cout << "kubetrail " << KUBETRAIL_VERSION << " (plugin ABI " << KUBETRAIL_ABI_MAJOR << "." << KUBETRAIL_ABI_MINOR
            << ")\n";
  return 0;
}

int run_plugins(const Args& args) {
  config::Config cfg;
  std::filesystem::path dir = args.has("--dir") ? std::filesystem::path(args.get("--dir")) : plugin_dir(cfg, args);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::cerr << "kubetrail: plugins directory " << dir.string() << " does not exist\n";
    return 1;
  }
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".so") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  bool verbose = args.has("-v") || args.has("--verbose");
  int status = 0;
  std::cout << "plugins in " << dir.string() << ":\n";
  for (const auto& f : files) {
    try {
      auto lib = plugin::PluginLibrary::load(f);
      const auto& i = lib->info();
      std::cout << "  " << i.name << " " << i.version << "  ABI " << i.abi_major << "." << i.abi_minor << "  "
                << i.description << "  (" << f.filename().string() << ")\n";
      if (verbose) {
        auto schema = nlohmann::json::parse(i.config_schema.empty() ? "null" : i.config_schema, nullptr, false);
        std::string text = schema.is_null() ? "(takes no config)" : schema.dump(2);
        std::string indented;
        for (char c : text) indented += c == '\n' ? std::string("\n      ") : std::string(1, c);
        std::cout << "    config schema:\n      " << indented << "\n";
      }
    } catch (const Error& e) {
      std::cout << "  ! " << e.what() << "\n";
      status = 1;
    }
  }
  if (files.empty()) std::cout << "  (none)\n";
  return status;
}

int run_check_config(const Args& args) {
  config::Config cfg;
  try {
    cfg = load_config(args);
  } catch (const Error& e) {
    std::cerr << "kubetrail: " << e.what() << "\n";
    return 2;
  }
  if (args.has("--log-level")) {
    try {
      setup_logging(cfg, args);
    } catch (const Error& e) {
      std::cerr << "kubetrail: " << e.what() << "\n";
      return 2;
    }
  }
  plugin::PluginLoader loader(plugin_dir(cfg, args));
  int status = 0;
  for (const auto& h : cfg.handlers) {
    try {
      auto lib = loader.load(h.plugin);
      lib->validate_config(h.config, "handler \"" + h.name + "\" (plugin " + lib->info().name + ")");
    } catch (const Error& e) {
      std::cerr << "kubetrail: " << h.where << ": " << e.what() << "\n";
      status = 2;
    }
  }
  // What the schema cannot say (a webhook with both url and url_env, an exec
  // command that does not exist, a *_env variable that is unset) the plugin's
  // create() says: each handler is created as run creates it at start, then
  // destroyed without having been given anything.
  if (status == 0 && !args.has("--schema-only")) {
    auto handlers = deliver::create_handlers(cfg, loader, nullptr);
    for (const auto& h : cfg.handlers)
      if (auto it = handlers.find(h.name); it != handlers.end() && !it->second.handler) {
        std::cerr << "kubetrail: " << it->second.error << "\n";
        status = 2;
      }
  }
  if (status == 0)
    std::cout << cfg.source << ": OK (" << cfg.handlers.size() << " handlers, " << cfg.routes.size()
              << " routes, plugins from " << loader.dir().string() << ")\n";
  return status;
}

int main(int argc, char** argv) {
  state::configure_sqlite();
  // Logs go to stderr before any command sets its own up (setup_logging):
  // stdout is the command's output - history -o json, a handler's lines -
  // and spdlog's default logger writes to stdout.
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  // Handlers write to sockets and pipes whose readers may go away: that must
  // be an EPIPE error for the handler, not the end of kubetrail (plugin.h).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app("kubetrail - semantic change sets from a Kubernetes cluster, to handler plugins", "kubetrail");
  Args args;
  const CommandSpec* chosen = nullptr;
  std::string completion_shell;
  build(app, args, chosen, completion_shell);
  // "kubetrail help [COMMAND]" as well as --help.
  std::vector<std::string> words(argv + 1, argv + argc);
  if (!words.empty() && words[0] == "help") {
    words.erase(words.begin());
    words.emplace_back("--help");
  }
  std::vector<std::string> reversed(words.rbegin(), words.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version: printed to stdout
    std::string where = "kubetrail";
    for (const auto* sub : app.get_subcommands()) where += " " + sub->get_name();
    std::cerr << where << ": " << e.what() << "\nRun '" << where << " --help' for its options.\n";
    return 2;
  }
  if (app.got_subcommand("completion")) {
    std::cout << bash_completion();
    return 0;
  }
  if (!chosen) {
    std::cerr << app.help();
    return 2;
  }
  for (const auto& variable : config::environment_overrides(environ)) {
    const std::string& name = variable.first;
    bool known = std::any_of(config::env_override_keys().begin(), config::env_override_keys().end(),
                             [&](const auto& o) { return o.variable == name; });
    for (const auto& c : commands())
      for (const auto& o : c.options) known = known || (o.env && name == o.env);
    known = known || name == kTokenVariable;
    // What the exec handler sets for its command (plugins/exec, README):
    // a hook that runs kubetrail itself inherits them.
    static constexpr std::array<std::string_view, 7> kSetByExecHandler = {
        "KUBETRAIL_TYPE",    "KUBETRAIL_KIND", "KUBETRAIL_NAMESPACE", "KUBETRAIL_NAME",
        "KUBETRAIL_SUMMARY", "KUBETRAIL_ID",   "KUBETRAIL_COUNT"};
    known = known || std::find(kSetByExecHandler.begin(), kSetByExecHandler.end(), name) != kSetByExecHandler.end();
    if (!known)
      std::cerr << "kubetrail: warning: environment variable " << name
                << " is not one kubetrail reads (see 'kubetrail run --help')\n";
  }
  try {
    return chosen->run(args);
  } catch (const Error& e) {
    std::cerr << "kubetrail " << chosen->name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "kubetrail " << chosen->name << ": internal error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace kubetrail::cli

int main(int argc, char** argv) { return kubetrail::cli::main(argc, argv); }
