// The state store's log file (state/log_file.hpp), PATH-log: the file is
// one a user points at (and a crash leaves its last frame cut short), so it
// may hold anything. Input: the file after its 16-byte header (which the
// harness puts in front; the store checks the header itself). Reading may
// only stop, at a byte offset it names, never crash, hang or read past the
// input; every entry it hands on lies inside the input; and what it read,
// written again as frames, reads back the same.
#include "fuzz.hpp"
#include "state/log_file.hpp"

using namespace kubetrail;

namespace {
struct Read {
  std::string payload;  // the entries re-encoded, one frame's worth
  size_t entries = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file(state::LogFile::kHeaderBytes, '\0');
  file.append(fuzz::bytes(data, size));
  Read read;
  auto scan = state::LogFile::scan(file, [&](const state::LogEntry& e, size_t body_at) {
    if (body_at < state::LogFile::kHeaderBytes || body_at + e.body.size() > file.size()) __builtin_trap();
    if (std::string_view(file).substr(body_at, e.body.size()) != e.body) __builtin_trap();
    state::LogFile::encode(read.payload, e);
    ++read.entries;
  });
  if (scan.end > file.size() || scan.end < state::LogFile::kHeaderBytes) __builtin_trap();
  if (scan.end < file.size() && scan.stopped.find("byte " + std::to_string(scan.end)) != 0) __builtin_trap();
  if (scan.end == file.size() && !scan.stopped.empty()) __builtin_trap();
  // Round trip: the entries read, as one frame, read back as the same entries.
  if (read.entries == 0) return 0;
  std::string again(state::LogFile::kHeaderBytes, '\0');
  again += state::LogFile::frame(read.payload);
  size_t n = 0;
  std::string payload;
  auto second = state::LogFile::scan(again, [&](const state::LogEntry& e, size_t) {
    state::LogFile::encode(payload, e);
    ++n;
  });
  if (!second.stopped.empty() || n != read.entries || payload != read.payload) __builtin_trap();
  return 0;
}
