// kubetrail's entry point: subcommand dispatch and argument parsing.
#include <kubetrail/plugin.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <set>

#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/error.hpp"
#include "deliver/deliver.hpp"
#include "plugin/plugin_host.hpp"
#include "version.hpp"

namespace kubetrail::cli {

namespace {

constexpr const char* kUsage = R"(kubetrail - semantic change sets from a Kubernetes cluster, to handler plugins

usage: kubetrail COMMAND [OPTIONS]

commands:
  replay [--config FILE] RECORDING...   feed recorded watch streams (kubectl get --watch
                                        --output-watch-events -o json) through diff, routes
                                        and handlers; no cluster needed
  diff [--output text|json] OLD NEW     semantic diff of two manifests (YAML or JSON)
  check-config [--config FILE] [--schema-only]
                                        validate a config, load its plugins and create each handler
                                        as run would (--schema-only: schemas only, for CI without secrets)
  plugins [--dir DIR] [-v]              list installed plugins (-v: with config schemas)
  version                               print version and plugin ABI version
  run [--config FILE] [--kubeconfig F] [--context C] [--reset-state]
                                        watch the cluster: [watch] resources through the diff,
                                        routes and handlers until SIGINT/SIGTERM
  rbac [--config FILE] [--kubeconfig F] [--context C] [--namespace NS] [--service-account SA]
                                        print the least-privilege RBAC for the config (list and
                                        watch of what [watch] resolves to; the Lease with leader
                                        election) for service account NS/SA (kubetrail/kubetrail)

common options:
  --config FILE        TOML config (default: built-in: every change set as a line on stdout)
  --plugins-dir DIR    where NAME.so plugins are found (default: [plugins] dir, else beside kubetrail)
  --log-level LEVEL    trace, debug, info, warn, error
)";

// Options that take a value; everything else starting with '-' is a flag.
const std::set<std::string> kValued = {"--config",     "--plugins-dir", "--dir",       "--log-level",      "--output",
                                       "--kubeconfig", "--context",     "--namespace", "--service-account"};
const std::set<std::string> kFlags = {"-v", "--verbose", "-h", "--help", "--reset-state", "--schema-only"};

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
  // Handlers write to sockets and pipes whose readers may go away: that must
  // be an EPIPE error for the handler, not the end of kubetrail (plugin.h).
  std::signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "--version") command = "version";
  Args args;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (kValued.count(a)) {
      if (i + 1 >= argc) {
        std::cerr << "kubetrail " << command << ": option " << a << " needs a value\n";
        return 2;
      }
      args.options[a] = argv[++i];
    } else if (a.starts_with("--") && a.find('=') != std::string::npos && kValued.count(a.substr(0, a.find('=')))) {
      args.options[a.substr(0, a.find('='))] = a.substr(a.find('=') + 1);
    } else if (kFlags.count(a)) {
      args.options[a] = "";
    } else if (a.size() > 1 && a[0] == '-') {
      std::cerr << "kubetrail " << command << ": unknown option " << a << "\n";
      return 2;
    } else {
      args.positional.push_back(a);
    }
  }
  if (args.has("-h") || args.has("--help")) {
    std::cout << kUsage;
    return 0;
  }
  try {
    if (command == "replay") return run_replay(args);
    if (command == "diff") return run_diff(args);
    if (command == "check-config") return run_check_config(args);
    if (command == "plugins") return run_plugins(args);
    if (command == "version") return run_version(args);
    if (command == "run") return run_daemon(args);
    if (command == "rbac") return run_rbac(args);
  } catch (const Error& e) {
    std::cerr << "kubetrail " << command << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "kubetrail " << command << ": internal error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "kubetrail: unknown command \"" << command << "\"\n\n" << kUsage;
  return 2;
}

}  // namespace kubetrail::cli

int main(int argc, char** argv) { return kubetrail::cli::main(argc, argv); }
