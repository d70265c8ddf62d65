#include "cli/common.hpp"

#include <unistd.h>
#include <algorithm>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "common/error.hpp"
#include "common/json_writer.hpp"
#include "common/log_context.hpp"
#include "plugin/plugin_host.hpp"
#include "watch/watches.hpp"

namespace kubetrail::cli {

config::Config load_config(const Args& args) {
  auto env = config::environment_overrides(environ);
  if (args.has("--config")) return config::load_file(args.get("--config"), env);
  // Where packages and the container image put it; a file that exists but
  // cannot be read is an error, not a silent fall-back to the built-in.
  if (std::error_code ec; std::filesystem::exists(kSystemConfig, ec)) return config::load_file(kSystemConfig, env);
  return config::parse(config::default_config_text(), "<built-in config>", env);
}

void setup_logging(const config::Config& cfg, const Args& args) {
  // Logs go to stderr: stdout belongs to handlers such as log (format text).
  auto logger = spdlog::stderr_color_mt("kubetrail");
  spdlog::set_default_logger(logger);
  std::string level = args.get("--log-level", cfg.log.level);
  // spdlog's from_str() turns any unknown name into "off": --log-level bogus
  // silenced every line. Only the names the config accepts are taken.
  static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn", "error"};
  if (std::find(std::begin(kLevels), std::end(kLevels), level) == std::end(kLevels))
    throw Error("--log-level \"" + level + "\" is not one of trace, debug, info, warn, error");
  spdlog::set_level(spdlog::level::from_str(level));
  if (cfg.log.format == "json")
    spdlog::set_formatter(log_context::json_formatter());  // fields as fields: handler, resource, attempt
  else
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
}

std::string configured_redaction_key(const config::Config& cfg) {
  return config::read_secret(cfg.redaction_key_env, cfg.redaction_key_file, cfg.source + ": [diff] redaction_key_env",
                             cfg.source + ": [diff] redaction_key_file");
}

std::filesystem::path plugin_dir(const config::Config& cfg, const Args& args) {
  if (args.has("--plugins-dir")) return args.get("--plugins-dir");
  if (!cfg.plugins_dir.empty()) return cfg.plugins_dir;
  return plugin::default_plugin_dir();
}

std::map<std::string, model::ResourceType> resolve_watched(const config::Config& cfg,
                                                           const kube::Discovery& discovery) {
  std::vector<std::string> unresolved;
  auto resolved = watch::Watches::resolve(discovery, cfg.watch.resources, unresolved);
  if (!unresolved.empty()) {
    std::string why = cfg.source + ": [watch] resources:";
    for (const auto& e : unresolved) why += "\n  " + e;
    throw Error(why);
  }
  return resolved;
}

}  // namespace kubetrail::cli
