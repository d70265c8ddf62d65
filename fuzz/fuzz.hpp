// Shared by the harnesses: the one rule of every harness is that input may
// only end as a kubetrail::Error (or an error value); any other exception,
// crash, hang, leak or undefined behaviour is a finding.
#pragma once

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace fuzz {

// Log lines are formatted (their arguments are fuzzed too) but go nowhere:
// a line per input would be most of the run's time.
inline const bool quiet_logs = [] {
  auto logger = std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_mt>());
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return true;
}();

inline std::string_view bytes(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

inline void write_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(text.data(), static_cast<std::streamsize>(text.size()));
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A file holding `text`, for parsers that read files (kubeconfig,
// manifests): one per process, rewritten for every input.
inline std::string as_file(std::string_view text, const char* ext) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("kubetrail-fuzz-" + std::to_string(::getpid()) + ext)).string();
  write_file(path, text);
  return path;
}

}  // namespace fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
