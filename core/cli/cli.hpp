// The kubetrail command line: one function per subcommand, each returning the
// process exit status. Exit statuses: 0 success, 1 the work failed (a
// malformed stream, an undelivered change set, a plugin that would not
// load), 2 usage or configuration error.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace kubetrail::cli {

// Parsed arguments of a subcommand: --flag VALUE options and positionals.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // "--config" -> "file"; flags map to ""
  bool has(const std::string& k) const { return options.count(k) != 0; }
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = options.find(k);
    return it == options.end() ? def : it->second;
  }
};

int run_replay(const Args& args);
int run_plugins(const Args& args);
int run_check_config(const Args& args);
int run_version(const Args& args);
int run_diff(const Args& args);
int run_daemon(const Args& args);
int run_rbac(const Args& args);
int run_snapshot(const Args& args);
int run_history(const Args& args);
int run_dead_letters(const Args& args);
int main(int argc, char** argv);

}  // namespace kubetrail::cli
