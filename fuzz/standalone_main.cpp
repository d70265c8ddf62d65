// Runs a harness over files, without libFuzzer: how ctest replays the seed
// corpora and every regression input (tests/fuzz-regressions/) in the
// normal GCC build. Directories are read one level deep.
#include <cstdio>
#include <filesystem>
#include <vector>

#include "fuzz.hpp"

int main(int argc, char** argv) {
  size_t n = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& e : std::filesystem::directory_iterator(argv[i]))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.emplace_back(argv[i]);
    }
    for (const auto& f : files) {
      std::string s = fuzz::read_file(f);
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
      ++n;
    }
  }
  std::printf("%zu inputs run, none crashed\n", n);
  return n ? 0 : 1;
}
