#include <doctest/doctest.h>

#include "common/error.hpp"
#include "deliver/engine.hpp"
#include "helpers.hpp"
#include "plugin/plugin_host.hpp"

using namespace kubetrail;
namespace fs = std::filesystem;

namespace {

fs::path test_plugin(const std::string& name) { return fs::path(TEST_PLUGIN_DIR) / (name + ".so"); }

model::ChangeSet sample(std::string name = "web") {
  model::ChangeSet cs;
  cs.type = model::ChangeType::modified;
  cs.resource = model::resource_type_for("apps/v1", "Deployment");
  cs.object_namespace = "shop";
  cs.name = std::move(name);
  cs.uid = "u1";
  cs.resource_version = "42";
  cs.id = "c/u1/42";
  cs.changes = {{model::FieldOp::replace, "spec.replicas", "2", "3"},
                {model::FieldOp::add, "metadata.labels.tier", "", "\"web\""}};
  cs.summary = model::summarize(cs);
  return cs;
}

std::string refusal(const fs::path& p) {
  try {
    plugin::PluginLibrary::load(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

}  // namespace

TEST_CASE("a plain C99 plugin is loaded and receives a batch through the ABI") {
  test::TempDir dir;
  auto lib = plugin::PluginLibrary::load(test_plugin("c_recorder"));
  CHECK(lib->info().name == "c_recorder");
  CHECK(lib->info().version == "1.0.0");
  CHECK(lib->info().abi_major == KUBETRAIL_ABI_MAJOR);
  Metrics metrics;
  plugin::Handler h("rec", lib, {{"path", (dir / "out.txt").string()}}, &metrics);
  auto a = sample("web"), b = sample("api");
  b.type = model::ChangeType::added;
  b.changes.clear();
  plugin::AbiChangeSet va(a), vb(b);
  const plugin::AbiChangeSet* items[] = {&va, &vb};
  auto out = h.deliver(items);
  CHECK(out.status == KUBETRAIL_OK);
  CHECK(out.item_status == std::vector<int32_t>{KUBETRAIL_OK, KUBETRAIL_OK});
  CHECK(test::read_file(dir / "out.txt") ==
        "2 deployments shop/web 2 padded 3:spec.replicas 1:metadata.labels.tier\n"
        "1 deployments shop/api 0 padded\n");
  CHECK(metrics.render().find("kubetrail_plugin_c_recorder_items_total{handler=\"rec\",plugin=\"c_recorder\"} 2") !=
        std::string::npos);
}

TEST_CASE("the change set JSON handed to plugins is the schema v1 document") {
  auto cs = sample();
  plugin::AbiChangeSet v(cs);
  auto j = nlohmann::json::parse(std::string(v.view()->json.ptr, v.view()->json.len));
  CHECK(j["schemaVersion"] == "kubetrail.dev/v1");
  CHECK(j["changes"][0] == nlohmann::json{{"op", "replace"}, {"path", "spec.replicas"}, {"old", 2}, {"new", 3}});
  CHECK(j["changes"][1] == nlohmann::json{{"op", "add"}, {"path", "metadata.labels.tier"}, {"new", "web"}});
}

TEST_CASE("plugins with the wrong ABI, no entry symbol, or not ELF are refused with one clear line") {
  test::TempDir dir;
  CHECK(refusal(test_plugin("bad_bad_major")).find("built for plugin ABI 2.0, this kubetrail speaks ABI 1.0") !=
        std::string::npos);
  CHECK(refusal(test_plugin("bad_too_new_minor")).find("built for plugin ABI 1.1, newer than this kubetrail") !=
        std::string::npos);
  CHECK(refusal(test_plugin("bad_refuses_host")).find("refused this host (host ABI 1.0)") != std::string::npos);
  CHECK(refusal(test_plugin("bad_no_entry")).find("does not export kubetrail_plugin_entry_v1") != std::string::npos);
  CHECK(refusal(test_plugin("bad_no_handle")).find("lacks a required function") != std::string::npos);
  test::write_file(dir / "text.so", "#!/bin/sh\necho not a plugin\n");
  std::string not_elf = refusal(dir / "text.so");
  CHECK(not_elf.find("plugin " + (dir / "text.so").string() + ": not a shared object") == 0);
  CHECK(refusal(dir / "missing.so").find("no such file") != std::string::npos);
  for (auto* name : {"bad_bad_major", "bad_no_entry"})
    CHECK(refusal(test_plugin(name)).find(test_plugin(name).string()) != std::string::npos);  // names the file
}

TEST_CASE("handler config is validated against the plugin's JSON Schema before create") {
  auto lib = plugin::PluginLibrary::load(test_plugin("c_recorder"));
  Metrics m;
  CHECK_THROWS_WITH_AS(plugin::Handler("rec", lib, {{"path", 5}}, &m),
                       doctest::Contains("handler \"rec\" (plugin c_recorder): key \"config.path\""), Error);
  CHECK_THROWS_WITH_AS(plugin::Handler("rec", lib, {{"path", "x"}, {"status", "maybe"}}, &m),
                       doctest::Contains("key \"config.status\""), Error);
  CHECK_THROWS_WITH_AS(plugin::Handler("rec", lib, nlohmann::json::object(), &m), doctest::Contains("path"), Error);
}

TEST_CASE("a failing create is refused with the plugin's own message") {
  auto lib = plugin::PluginLibrary::load(test_plugin("c_recorder"));
  Metrics m;
  CHECK_THROWS_WITH_AS(plugin::Handler("rec", lib, {{"path", "x"}, {"fail_create", true}}, &m),
                       "handler \"rec\" (plugin c_recorder): create failed: cannot open the test resource: permission "
                       "denied (as configured)",
                       Error);
}

namespace {
config::Config chain_config(const fs::path& dir, const std::string& first_extra, const std::string& second_plugin) {
  std::string text = "[plugins]\ndir = \"" + std::string(TEST_PLUGIN_DIR) +
                     "\"\n"
                     "[[handlers]]\nname = \"first\"\nplugin = \"c_recorder\"\n"
                     "retry = { attempts = 3, initial_ms = 1, max_ms = 5 }\n"
                     "config = { path = \"" +
                     (dir / "first.txt").string() + "\"" + first_extra +
                     " }\n"
                     "[[handlers]]\nname = \"second\"\nplugin = \"" +
                     second_plugin +
                     "\"\n"
                     "config = { path = \"" +
                     (dir / "second.txt").string() +
                     "\" }\n"
                     "[[routes]]\nchain = [\"first\", \"second\"]\n";
  return config::parse(text, "t.toml");
}
struct Chain {
  config::Config cfg;
  plugin::PluginLoader loader{TEST_PLUGIN_DIR};
  Metrics metrics;
  std::map<std::string, deliver::HandlerSlot> handlers;
  route::Router router;
  std::vector<std::chrono::milliseconds> sleeps;
  deliver::Engine engine;  // inline, as replay delivers
  explicit Chain(config::Config c)
      : cfg(std::move(c)),
        handlers(deliver::create_handlers(cfg, loader, &metrics)),
        router(cfg.routes),
        engine(handlers, cfg, router, &metrics,
               {.scheduling = deliver::Scheduling::inline_calls,
                .sleep = [this](std::chrono::milliseconds d) { sleeps.push_back(d); }}) {}
};
}  // namespace

TEST_CASE("RETRY is retried with backoff until OK, and delivered once") {
  test::TempDir dir;
  Chain c(chain_config(dir.path(), ", retries_before_ok = 2", "c_recorder"));
  CHECK(c.engine.submit(sample()));
  CHECK(c.sleeps.size() == 2);
  CHECK(test::lines_of(test::read_file(dir / "first.txt")).size() == 1);
  CHECK(test::lines_of(test::read_file(dir / "second.txt")).size() == 1);
}

// Before: replay's Dispatcher went on down the chain after a dead letter,
// while run's DeliveryService stopped there; now both stop (one engine).
TEST_CASE("RETRY past the attempts, and FAIL, dead-letter and end the chain - STOP ends it delivered") {
  test::TempDir dir;
  {
    Chain c(chain_config(dir.path(), ", status = \"retry\"", "c_recorder"));
    CHECK_FALSE(c.engine.submit(sample()));
    CHECK(c.sleeps.size() == 2);  // 3 attempts
    CHECK(c.engine.stats().dead == 1);
    CHECK_FALSE(fs::exists(dir / "second.txt"));  // the chain ended at the dead letter
  }
  {
    Chain c(chain_config(dir.path(), ", status = \"fail\"", "c_recorder"));
    CHECK_FALSE(c.engine.submit(sample()));
    CHECK(c.sleeps.empty());  // permanent: no retry
  }
  {
    fs::remove(dir / "second.txt");
    Chain c(chain_config(dir.path(), ", status = \"stop\"", "c_recorder"));
    CHECK(c.engine.submit(sample()));
    CHECK_FALSE(fs::exists(dir / "second.txt"));
  }
}

TEST_CASE("one handler that cannot be created never takes down the others") {
  test::TempDir dir;
  Chain c(chain_config(dir.path(), "", "bad_bad_major"));
  REQUIRE(c.handlers.at("first").handler);
  REQUIRE_FALSE(c.handlers.at("second").handler);
  CHECK(c.handlers.at("second").error.find("t.toml:") == 0);
  CHECK(c.handlers.at("second").error.find("bad_bad_major.so: built for plugin ABI 2.0") != std::string::npos);
  CHECK_FALSE(c.engine.submit(sample()));
  CHECK(test::lines_of(test::read_file(dir / "first.txt")).size() == 1);
}

TEST_CASE("backoff grows exponentially, is capped, and a plugin's retry-after wins") {
  config::RetryPolicy p{5, 100, 1000};
  for (int i = 0; i < 20; ++i) {
    auto d1 = deliver::backoff(p, 1, 0).count(), d3 = deliver::backoff(p, 3, 0).count();
    CHECK(d1 >= 80);
    CHECK(d1 <= 120);
    CHECK(d3 >= 320);
    CHECK(d3 <= 480);
    CHECK(deliver::backoff(p, 10, 0).count() <= 1200);
    CHECK(deliver::backoff(p, 1, 5000).count() == 5000);
  }
}
