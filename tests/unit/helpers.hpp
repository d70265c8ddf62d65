// Small shared test utilities: temporary directories, files, running the
// kubetrail binary.
#pragma once

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "state/state_store.hpp"

namespace test {

inline std::filesystem::path source_dir() { return KUBETRAIL_SOURCE_DIR; }

// A fresh directory, removed when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kubetrail-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

struct Run {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `kubetrail ARGS` (a shell-quoted string), capturing stdout and stderr.
// `env` ("NAME=VALUE ...", shell words) is added to the environment.
inline Run kubetrail(const std::string& args, const TempDir& dir, const std::string& env = "") {
  auto out = dir / "stdout.txt", err = dir / "stderr.txt";
  std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(KUBETRAIL_BINARY) + " " + args + " >" +
                    out.string() + " 2>" + err.string();
  Run r;
  int rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// Makes `store` refuse every outbox row for change set `id` (for `handler`
// only, when given), as a disk that fails mid-write would: the write that
// holds it throws and nothing of it happens.
inline void refuse_outbox_rows(kubetrail::state::StateStore& store, const std::string& id,
                               const std::string& handler = "") {
  store.refuse_outbox_rows_for_test(
      [id, handler](std::string_view i, std::string_view h) { return i == id && (handler.empty() || h == handler); });
}

// Everything logged (the default logger) while it lives.
struct LogCapture {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  LogCapture() {
    auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  std::string text() { return out.str(); }
};

}  // namespace test
