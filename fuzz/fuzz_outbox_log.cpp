// The state store's outbox file (state/outbox_log.hpp), PATH-outbox: a file
// a user points at (and a crash leaves its last frame cut short), so it may
// hold anything. Input: the file after its 16-byte header (which the
// harness puts in front, naming store 1). Opening may only end in a
// kubetrail::Error; once open, the indexes it built must agree with the
// file: every pending row reads back, a new row is added and delivered, and
// reopened the outbox counts the same pending rows and still knows the id.
#include "common/error.hpp"
#include "fuzz.hpp"
#include "state/outbox_log.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string file("KTLOG\0\0\1", 8);
  file.append("\1\0\0\0\0\0\0\0", 8);  // store id 1, little-endian
  file.append(fuzz::bytes(data, size));
  const std::string path = fuzz::as_file(file, "-outbox");
  try {
    auto log = state::OutboxLog::open(path, 1);
    const int64_t pending = log->pending_count();
    if (pending < 0) __builtin_trap();
    log->dead_letters();
    int64_t settled = 0;
    auto seqs = log->write({{"fuzz/new", "fuzz-handler", "r", 0, "{}"}}, {}, {}, 0, settled);
    if (seqs.size() != 1) __builtin_trap();
    if (seqs[0] == 0) return 0;  // the input holds that row already (the fuzzer can find the name)
    auto mine = log->pending("fuzz-handler", 0, 1u << 20);
    if (mine.empty() || mine.back().id != "fuzz/new" || mine.back().json != "{}") __builtin_trap();
    log->write({}, {seqs[0]}, {}, 0, settled);
    if (settled != 1 || log->pending_count() != pending) __builtin_trap();
    log.reset();
    auto again = state::OutboxLog::open(path, 1);
    if (again->pending_count() != pending) __builtin_trap();
    if (again->write({{"fuzz/new", "fuzz-handler", "r", 0, "{}"}}, {}, {}, 0, settled).front() != 0) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
