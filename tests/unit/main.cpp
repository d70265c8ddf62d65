// The unit tests' main. The test binary is a plugin host (it loads plugins
// through the real host code), and plugin.h promises plugins that the host
// ignores SIGPIPE - so the tests must too, or the exec plugin writing to a
// program that exits without reading its stdin would end the test run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return doctest::Context(argc, argv).run();
}
