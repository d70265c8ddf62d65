// The state store opened on files a user points at: its log (PATH-log) and
// its snapshot (PATH-objects) may hold anything, and what is in them is read
// at open, folded (the log's keys sorted into the snapshot's order and
// merged with it), loaded and saved again. fuzz_state_log covers reading
// frames; here the entries inside frames that check are hostile, so the
// harness writes the checksums itself (a mutated checksum only ever stops a
// read).
//
// Input: one byte - bit 0: the frames go to the snapshot (else the log);
// bit 1: the last frame is cut short by one byte (a crash's torn tail) -
// then frames, each as a 2-byte little-endian length and its payload
// (entries as LogFile::encode writes them). The harness puts the store's own
// file header in front (a wrong one is refused by name: unit tests).
//
// The store is opened with folds due at one entry, every resource the input
// names (up to 8) is loaded and listed, the journal read, and one save made
// (a fold again, now over what the input left in the snapshot). Input may
// only end as a kubetrail::Error; a store that opened and took the save
// must reopen with it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "common/error.hpp"
#include "fuzz.hpp"
#include "model/object_store.hpp"
#include "state/log_file.hpp"
#include "state/state_store.hpp"

using namespace kubetrail;

namespace {

// A store as kubetrail leaves it: one resource saved, closed. Its files are
// written back before every input.
struct Pristine {
  std::filesystem::path dir, path;
  std::map<std::string, std::string> files;  // file name -> bytes
};

const Pristine& pristine() {
  static const Pristine p = [] {
    Pristine p;
    p.dir = std::filesystem::temp_directory_path() / ("kubetrail-fuzz-store-" + std::to_string(::getpid()));
    std::filesystem::remove_all(p.dir);
    std::filesystem::create_directories(p.dir);
    // Removed at exit, by a path with no destructor (Pristine's own is gone by then).
    static char removed_at_exit[4096];
    std::snprintf(removed_at_exit, sizeof removed_at_exit, "%s", p.dir.c_str());
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(removed_at_exit, ignored);
    });
    p.path = p.dir / "s.db";
    {
      auto store = state::StateStore::open(p.path.string(), false);
      model::StoredObject a;
      a.uid = "u-a";
      a.resource_version = "1";
      a.json = R"({"v":1})";
      store->save("cm", {{"ns/a", &a}}, {}, "1");
    }
    for (const auto& entry : std::filesystem::directory_iterator(p.dir))
      p.files[entry.path().filename().string()] = fuzz::read_file(entry.path());
    return p;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::bytes(data, size);
  if (in.empty()) return 0;
  const auto flags = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  const Pristine& p = pristine();
  for (const auto& entry : std::filesystem::directory_iterator(p.dir))
    if (!p.files.count(entry.path().filename().string())) std::filesystem::remove_all(entry.path());
  for (const auto& [name, bytes] : p.files) fuzz::write_file(p.dir / name, bytes);

  const std::string target = p.path.filename().string() + ((flags & 1) ? "-objects" : "-log");
  std::string file = p.files.count(target) ? p.files.at(target).substr(0, state::LogFile::kHeaderBytes) : "";
  if (file.size() < state::LogFile::kHeaderBytes) return 0;  // (the pristine store always has both)
  while (in.size() >= 2) {
    size_t n = static_cast<unsigned char>(in[0]) | static_cast<size_t>(static_cast<unsigned char>(in[1])) << 8;
    in.remove_prefix(2);
    n = std::min(n, in.size());
    file += state::LogFile::frame(in.substr(0, n));
    in.remove_prefix(n);
  }
  if ((flags & 2) && file.size() > state::LogFile::kHeaderBytes) file.pop_back();
  fuzz::write_file(p.dir / target, file);

  std::set<std::string> resources{"cm"};
  state::LogFile::scan(file, [&](const state::LogEntry& e, size_t) {
    if (resources.size() < 8) resources.emplace(e.resource);
  });
  model::StoredObject b;
  b.uid = "u-b";
  b.resource_version = "2";
  b.json = R"({"v":2})";
  bool saved = false;
  try {
    auto store = state::StateStore::open(p.path.string(), false, 1);
    for (const auto& r : resources) {
      (void)store->load(r);
      (void)store->keys(r);
    }
    (void)store->journal_pending();
    store->save("cm", {{"ns/b", &b}}, {}, "2");
    saved = true;
  } catch (const Error&) {
    // refused by name: what a damaged or foreign file must get
  }
  if (!saved) return 0;
  // A store that opened and took a save reopens (an Error here escapes: a
  // finding) with that save in its checkpoint, whatever else it holds.
  auto again = state::StateStore::open(p.path.string(), false, 1);
  auto checkpoint = again->load("cm");
  if (!checkpoint || !checkpoint->objects.count("ns/b") || checkpoint->objects.at("ns/b").json != b.json)
    __builtin_trap();
  return 0;
}
