#include <doctest/doctest.h>

#include "common/error.hpp"
#include "config/config.hpp"
#include "helpers.hpp"

using namespace kubetrail;

namespace {
config::Config parse(const std::string& text) { return config::parse(text, "kubetrail.toml"); }

const char* kGood = R"(
[cluster]
name = "prod-eu"

[watch]
resources = ["deployments", "configmaps"]
exclude_namespaces = ["kube-system"]
events = ["Added", "Modified"]

[diff]
ignore_paths = ["metadata.labels.pod-template-hash"]
include_status = ["pods"]

[state]
path = ""

[[handlers]]
name = "audit"
plugin = "log"
config = { format = "json", path = "/tmp/x.jsonl" }
retry = { attempts = 3, initial_ms = 100, max_ms = 1000 }
batch_max = 10

[[routes]]
match = { resources = ["deployments"], namespaces = ["shop"], paths = ["spec.template.spec.containers[*].image"] }
chain = ["audit"]
)";
}  // namespace

TEST_CASE("a complete config parses into values") {
  auto c = parse(kGood);
  CHECK(c.cluster.name == "prod-eu");
  CHECK(c.watch.resources == std::vector<std::string>{"deployments", "configmaps"});
  CHECK(c.watch.events == std::vector<model::ChangeType>{model::ChangeType::added, model::ChangeType::modified});
  CHECK(c.diff.include_status == std::vector<std::string>{"pods"});
  CHECK(c.state.path.empty());
  REQUIRE(c.handlers.size() == 1);
  CHECK(c.handlers[0].config == nlohmann::json{{"format", "json"}, {"path", "/tmp/x.jsonl"}});
  CHECK(c.handlers[0].retry.attempts == 3);
  CHECK(c.handlers[0].batch_max == 10);
  CHECK(c.handlers[0].where == "kubetrail.toml:17");
  REQUIRE(c.routes.size() == 1);
  CHECK(c.routes[0].has_match);
  CHECK(c.routes[0].match.paths == std::vector<std::string>{"spec.template.spec.containers[*].image"});
}

TEST_CASE("an unknown key is an error naming file, line and key, with the known keys") {
  CHECK_THROWS_WITH_AS(parse("[watch]\nresources = []\nresourcse = [\"pods\"]\n"),
                       doctest::Contains("kubetrail.toml:3: unknown key \"watch.resourcse\" (known keys here: "),
                       Error);
  CHECK_THROWS_WITH_AS(parse("[wach]\n"), doctest::Contains("unknown key \"wach\""), Error);
  CHECK_THROWS_WITH_AS(parse(std::string(kGood) + "\n[[handlers]]\nname = \"x\"\nplugin = \"log\"\nconfg = {}\n"),
                       doctest::Contains("unknown key \"handlers[1].confg\""), Error);
}

TEST_CASE("a wrong type is an error naming file, line, key and what was expected") {
  CHECK_THROWS_WITH_AS(parse("[cluster]\nname = 5\n"),
                       doctest::Contains("kubetrail.toml:2: key \"cluster.name\": expected a string, got an integer"),
                       Error);
  CHECK_THROWS_WITH_AS(parse("[watch]\nresources = \"pods\"\n"),
                       doctest::Contains("kubetrail.toml:2: key \"watch.resources\": expected an array of strings"),
                       Error);
  CHECK_THROWS_WITH_AS(parse("[watch]\nevents = [\"Updated\"]\n"),
                       doctest::Contains("unknown event type \"Updated\" (expected Added, Modified or Deleted)"),
                       Error);
  CHECK_THROWS_WITH_AS(parse("[diff]\nignore_paths = [\"spec..x\"]\n"),
                       doctest::Contains("kubetrail.toml:2: key \"diff.ignore_paths\": invalid path"), Error);
}

TEST_CASE("a route naming a missing handler is an error naming the route's line") {
  const char* text = R"([[handlers]]
name = "audit"
plugin = "log"

[[routes]]
chain = ["audit", "team"]
)";
  CHECK_THROWS_WITH_AS(parse(text),
                       doctest::Contains("kubetrail.toml:6: key \"routes[0].chain\": no handler named \"team\" "
                                         "(defined handlers: audit)"),
                       Error);
}

// Before: accepted, and DeliveryService (which looked chains up by route
// name) gave both routes the last one's chain.
TEST_CASE("two routes with the same name are an error naming both lines") {
  const char* text = R"([[handlers]]
name = "audit"
plugin = "log"

[[handlers]]
name = "team"
plugin = "log"

[[routes]]
name = "main"
chain = ["audit"]

[[routes]]
name = "main"
chain = ["team"]
)";
  CHECK_THROWS_WITH_AS(parse(text),
                       doctest::Contains("kubetrail.toml:13: key \"routes[1].name\": route \"main\" is defined "
                                         "twice (first at kubetrail.toml:9)"),
                       Error);
}

TEST_CASE("a handler in no route, or defined twice, is an error") {
  CHECK_THROWS_WITH_AS(parse("[[handlers]]\nname = \"lonely\"\nplugin = \"log\"\n"),
                       doctest::Contains("handler \"lonely\" is in no route's chain"), Error);
  CHECK_THROWS_WITH_AS(
      parse("[[handlers]]\nname = \"a\"\nplugin = \"log\"\n[[handlers]]\nname = \"a\"\nplugin = \"log\"\n"),
      doctest::Contains("handler \"a\" is defined twice"), Error);
}

TEST_CASE("TOML syntax errors name the file and line") {
  CHECK_THROWS_WITH_AS(parse("[cluster\nname = 1\n"), doctest::Contains("kubetrail.toml"), Error);
}

TEST_CASE("config files load from disk - a missing file is a clear error") {
  test::TempDir dir;
  test::write_file(dir / "k.toml", kGood);
  CHECK(config::load_file(dir / "k.toml").cluster.name == "prod-eu");
  CHECK_THROWS_WITH_AS(config::load_file(dir / "nope.toml"), doctest::Contains("nope.toml"), Error);
}

TEST_CASE("the built-in default config is valid") {
  auto c = config::parse(config::default_config_text(), "<built-in>");
  REQUIRE(c.handlers.size() == 1);
  CHECK(c.handlers[0].plugin == "log");
}

TEST_CASE("leader election timings follow client-go's rules, and errors name the line and key") {
  auto cfg = parse(
      "[leader_election]\nenabled = true\nnamespace = \"ops\"\nlease_duration_s = 30\nrenew_deadline_s = 20\n"
      "retry_period_s = 4\n");
  CHECK(cfg.leader_election.enabled);
  CHECK(cfg.leader_election.lease_namespace == "ops");
  CHECK(cfg.leader_election.lease_duration_s == 30);
  CHECK(cfg.leader_election.retry_period_s == 4);
  CHECK(parse("[leader_election]\nenabled = true\n").leader_election.renew_deadline_s == 10);  // client-go's
  CHECK_THROWS_WITH_AS(parse("[leader_election]\nlease_duration_s = 10\nrenew_deadline_s = 10\n"),
                       "kubetrail.toml:2: key \"leader_election.lease_duration_s\": must be greater than "
                       "renew_deadline_s (10)",
                       Error);
  CHECK_THROWS_WITH_AS(parse("[leader_election]\nrenew_deadline_s = 6\nretry_period_s = 5\n"),
                       "kubetrail.toml:2: key \"leader_election.renew_deadline_s\": must be greater than 1.2 x "
                       "retry_period_s (5)",
                       Error);
}

TEST_CASE("watch patterns are *.GROUP only, and re-discovery has a period") {
  auto cfg = parse("[watch]\nresources = [\"pods\", \"*.cert-manager.io\"]\nrediscover_s = 60\n");
  CHECK(cfg.watch.resources.size() == 2);
  CHECK(cfg.watch.rediscover_s == 60);
  CHECK(parse("[watch]\nresources = [\"pods\"]\n").watch.rediscover_s == 300);
  for (const char* bad : {"*", "*.", "cert*", "*.a*"}) {
    std::string want = "kubetrail.toml:2: key \"watch.resources\": \"" + std::string(bad) +
                       "\": a pattern must be \"*.GROUP\" (every resource of one API group)";
    CHECK_THROWS_WITH_AS(parse(std::string("[watch]\nresources = [\"") + bad + "\"]\n"), want.c_str(), Error);
  }
}

// Found by fuzz/fuzz_config: toml11 3.7 reads past its buffer on a literal
// string holding invalid UTF-8 (ASan: heap-buffer-overflow in
// parse_literal_string). A TOML file must be UTF-8: anything else is refused
// first, naming the line and byte offset.
TEST_CASE("config: a file that is not UTF-8 is an error naming line and offset, and valid UTF-8 is fine") {
  CHECK_THROWS_WITH_AS(config::parse("[cluster]\nname = 'lo\x99\x8a'\n", "bad.toml"),
                       doctest::Contains("bad.toml:2: not UTF-8 at byte offset 20"), Error);
  CHECK_THROWS_AS(config::parse("a = \"\xc0\xaf\"\n", "overlong.toml"), Error);
  CHECK_THROWS_AS(config::parse("a = \"\xed\xa0\x80\"\n", "surrogate.toml"), Error);
  CHECK_THROWS_AS(config::parse("a = \"\xe2\x82\"\n", "cut.toml"), Error);
  auto cfg = config::parse("[cluster]\nname = \"pr\xc3\xa9-\xe2\x86\x92-\xf0\x9f\x9a\x80\"\n", "ok.toml");
  CHECK(cfg.cluster.name == "pr\xc3\xa9-\xe2\x86\x92-\xf0\x9f\x9a\x80");
}

// toml11 parses arrays and inline tables recursively: a config with
// 100,000 nested brackets, or 5,000 nested inline tables, killed kubetrail
// with SIGSEGV (both failed here before: the test process crashed). Now
// deeper than kMaxConfigDepth is refused first, naming line and offset;
// brackets inside strings and comments do not count.
TEST_CASE("config: arrays or inline tables nested too deep are an error naming line and offset, not a crash") {
  const std::string deep_array = "[cluster]\nname = \"x\"\nv = " + std::string(100000, '[') + std::string(100000, ']');
  CHECK_THROWS_WITH_AS(config::parse(deep_array + "\n", "deep.toml"),
                       doctest::Contains("deep.toml:3: arrays and inline tables nested deeper than 128 levels at byte "
                                         "offset 153"),
                       Error);
  std::string deep_table = "x = ";
  for (int i = 0; i < 5000; ++i) deep_table += "{a = ";
  deep_table += "1" + std::string(5000, '}') + "\n";
  CHECK_THROWS_WITH_AS(config::parse(deep_table, "tables.toml"), doctest::Contains("tables.toml:1: arrays and inline"),
                       Error);
  // In strings (all four kinds) and comments, brackets are text.
  const std::string many(300, '[');
  auto cfg =
      config::parse("[cluster]\nname = \"" + many + "\\\"" + many + "\"\n# " + many +
                        "\n[[handlers]]\nname = \"h\"\nplugin = \"log\"\n[handlers.config]\na = '" + many +
                        "'\nb = \"\"\"\n" + many + "\"\"\"\nc = '\''\n" + many + "'\''\n[[routes]]\nchain = [\"h\"]\n",
                    "strings.toml");
  CHECK(cfg.cluster.name == many + "\"" + many);
}

TEST_CASE("config: cluster.compression is auto unless set, and only auto, gzip or none") {
  auto with = [](const std::string& setting) {
    std::string text = kGood;
    const std::string name = "name = \"prod-eu\"\n";
    return text.replace(text.find(name), name.size(), name + "compression = \"" + setting + "\"\n");
  };
  CHECK(parse(kGood).cluster.compression == "auto");
  CHECK(parse(with("none")).cluster.compression == "none");
  CHECK(parse(with("gzip")).cluster.compression == "gzip");
  CHECK_THROWS_WITH_AS(parse(with("zip")),
                       doctest::Contains("kubetrail.toml:4: key \"cluster.compression\": expected one of"), Error);
}

TEST_CASE("KUBETRAIL_* overrides take the key's type, keep odd characters, and name the variable in errors") {
  using kubetrail::config::parse;
  const std::string base = "[cluster]\nname = \"from-file\"\n[server]\nlisten = \"127.0.0.1:9090\"\n";
  auto cfg = parse(base, "k.toml",
                   {{"KUBETRAIL_CLUSTER_NAME", "a \"quoted\" \\ name"},
                    {"KUBETRAIL_WATCH_NAMESPACES", " shop, payments ,,"},
                    {"KUBETRAIL_LEADER_ELECTION", "true"},
                    {"KUBETRAIL_STATE_PATH", ""}});
  CHECK(cfg.cluster.name == "a \"quoted\" \\ name");
  CHECK(cfg.watch.namespaces == std::vector<std::string>{"shop", "payments"});
  CHECK(cfg.leader_election.enabled);
  CHECK(cfg.state.path.empty());
  CHECK(cfg.server.listen == "127.0.0.1:9090");  // not overridden: the file's
  CHECK_THROWS_WITH_AS(parse(base, "k.toml", {{"KUBETRAIL_LOG_FORMAT", "xml"}}),
                       doctest::Contains("$KUBETRAIL_LOG_FORMAT:1: key \"log.format\""), kubetrail::Error);
  CHECK_THROWS_WITH_AS(parse(base, "k.toml", {{"KUBETRAIL_LEADER_ELECTION", "1"}}),
                       doctest::Contains("KUBETRAIL_LEADER_ELECTION: expected true or false"), kubetrail::Error);
}
