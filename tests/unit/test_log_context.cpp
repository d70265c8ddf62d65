// [log] format = "json": fields as fields (issue 16, item 6). Before
// 2026-12-04 handler, resource and attempt existed only inside "msg".
#include <doctest/doctest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <thread>

#include "common/log_context.hpp"
#include "helpers.hpp"

using nlohmann::json;
namespace lc = kubetrail::log_context;

namespace {
struct JsonLog {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> logger;
  JsonLog() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
    sink->set_formatter(lc::json_formatter());
    logger = std::make_shared<spdlog::logger>("log-context-test", sink);
  }
  std::vector<json> lines() {
    std::vector<json> out;
    for (const auto& l : test::lines_of(text.str())) out.push_back(json::parse(l));
    return out;
  }
};
}  // namespace

TEST_CASE("json logs: a scope's fields are keys of each line it writes, nested, gone after it, per thread") {
  JsonLog log;
  {
    lc::Scope handler("handler", "slack \"ops\"");
    log.logger->warn("first");
    {
      lc::Scope attempt("attempt", 3);
      log.logger->warn("second {}", 2);
      std::thread([&] { log.logger->info("other thread"); }).join();
    }
    log.logger->error("third");
  }
  log.logger->info("outside");
  auto lines = log.lines();
  REQUIRE(lines.size() == 5);
  CHECK(lines[0]["msg"] == "first");
  CHECK(lines[0]["level"] == "warning");
  CHECK(lines[0]["handler"] == "slack \"ops\"");
  CHECK(!lines[0].contains("attempt"));
  CHECK(lines[1]["msg"] == "second 2");
  CHECK(lines[1]["attempt"] == 3);  // a number, not a string
  CHECK(lines[1]["handler"] == "slack \"ops\"");
  CHECK(lines[2]["msg"] == "other thread");
  CHECK(!lines[2].contains("handler"));
  CHECK(!lines[3].contains("attempt"));
  CHECK(lines[3]["handler"] == "slack \"ops\"");
  CHECK(!lines[4].contains("handler"));
  CHECK(lines[4]["time"].get<std::string>().ends_with("Z"));
}
