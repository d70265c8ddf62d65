// Pieces shared by the subcommands: loading the config, setting up logging,
// finding plugins.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "cli/cli.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "kube/discovery.hpp"
#include "model/resource_type.hpp"

namespace kubetrail::cli {

// The config read when --config (or KUBETRAIL_CONFIG) names none.
inline constexpr const char* kSystemConfig = "/etc/kubetrail/kubetrail.toml";
// --config FILE, else kSystemConfig when it exists, else the built-in
// default; KUBETRAIL_* overrides applied (config::env_override_keys()).
// Throws kubetrail::Error.
config::Config load_config(const Args& args);
// Logging to stderr, at the config's level unless --log-level overrides it.
void setup_logging(const config::Config& cfg, const Args& args);
// --plugins-dir, else [plugins] dir, else beside the executable.
std::filesystem::path plugin_dir(const config::Config& cfg, const Args& args);
// The redaction key [diff] redaction_key_file / redaction_key_env name, or
// "" when neither is set. A named file or variable that is missing or empty
// is an error naming it. The key itself is never logged.
std::string configured_redaction_key(const config::Config& cfg);
// [watch] resources through `discovery`, as `run` resolves them (by
// qualified name); a name that does not resolve is an error listing each
// with its close matches.
std::map<std::string, model::ResourceType> resolve_watched(const config::Config& cfg, const kube::Discovery& discovery);

}  // namespace kubetrail::cli
