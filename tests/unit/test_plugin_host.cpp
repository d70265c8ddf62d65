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

// Issue 15: plugins get the change set's rendering itself, not a copy in a
// padded buffer of the ABI view's own, and the promised zero bytes follow
// it. Failed before: the view's JSON was a copy.
TEST_CASE("the JSON handed to plugins is the change set's rendering, with the padding after it") {
  auto cs = sample();
  cs.render();
  plugin::AbiChangeSet v(cs);
  CHECK(v.view()->json.ptr == cs.rendered->data());
  CHECK(v.json() == cs.to_json());
  for (size_t i = 0; i <= KUBETRAIL_JSON_PADDING; ++i) CHECK(v.view()->json.ptr[v.view()->json.len + i] == '\0');
  // Not rendered: the view renders it, with the same padding.
  auto plain = sample();
  plugin::AbiChangeSet w(plain);
  CHECK(w.json() == plain.to_json());
  for (size_t i = 0; i <= KUBETRAIL_JSON_PADDING; ++i) CHECK(w.view()->json.ptr[w.view()->json.len + i] == '\0');
}

TEST_CASE("ABI 1.1: the host hands plugins the actor, catch_up and the objects") {
  auto cs = sample();
  cs.actor = model::Actor{"helm", "Update", "2026-12-01T10:00:00Z"};
  cs.catch_up = true;
  cs.old_object = R"({"spec":{"replicas":2}})";
  cs.new_object = R"({"spec":{"replicas":3}})";
  plugin::AbiChangeSet v(cs);
  const kubetrail_change_set* view = v.view();
  REQUIRE(KUBETRAIL_HAS_MEMBER(view, kubetrail_change_set, new_object));
  CHECK(std::string_view(view->actor_manager.ptr, view->actor_manager.len) == "helm");
  CHECK(std::string_view(view->actor_operation.ptr, view->actor_operation.len) == "Update");
  CHECK(std::string_view(view->actor_time.ptr, view->actor_time.len) == "2026-12-01T10:00:00Z");
  CHECK(view->catch_up == 1);
  CHECK(std::string_view(view->old_object.ptr, view->old_object.len) == R"({"spec":{"replicas":2}})");
  CHECK(std::string_view(view->new_object.ptr, view->new_object.len) == R"({"spec":{"replicas":3}})");
}

TEST_CASE("ABI 1.2: a Snapshot change set carries its type, its snapshot and its place in it") {
  auto cs = sample();
  cs.type = model::ChangeType::snapshot;
  cs.changes.clear();
  cs.new_object = R"({"spec":{"replicas":3}})";
  cs.snapshot = model::SnapshotInfo{"cmdb/2026-12-05T03:00:00.000Z", "cmdb", 7, 12};
  plugin::AbiChangeSet v(cs);
  const kubetrail_change_set* view = v.view();
  REQUIRE(KUBETRAIL_HAS_MEMBER(view, kubetrail_change_set, snapshot_total));
  CHECK(view->type == KUBETRAIL_SNAPSHOT);
  CHECK(std::string_view(view->snapshot_id.ptr, view->snapshot_id.len) == "cmdb/2026-12-05T03:00:00.000Z");
  CHECK(view->snapshot_index == 7);
  CHECK(view->snapshot_total == 12);
  auto j = nlohmann::json::parse(std::string(view->json.ptr, view->json.len));
  CHECK(j["type"] == "Snapshot");
  CHECK(j["snapshot"] ==
        nlohmann::json{{"id", "cmdb/2026-12-05T03:00:00.000Z"}, {"handler", "cmdb"}, {"index", 7}, {"total", 12}});
  // Any other change set leaves them empty.
  plugin::AbiChangeSet modified(sample());
  CHECK(modified.view()->snapshot_id.len == 0);
  CHECK(modified.view()->snapshot_total == 0);
}

TEST_CASE("a handler with inventory_every whose plugin was built against ABI 1.1 is refused, naming both") {
  // A 1.1 plugin reads a type it does not know as Modified: it must never
  // be handed a Snapshot (ABI rule), so the handler is not created.
  test::TempDir dir;
  config::Config cfg;
  config::HandlerConfig h;
  h.name = "cmdb";
  h.plugin = test_plugin("bad_old_minor").string();
  h.where = "kubetrail.toml:3";
  h.inventory_every = std::chrono::hours(6);
  cfg.handlers.push_back(h);
  plugin::PluginLoader loader(dir.path());
  auto slots = deliver::create_handlers(cfg, loader, nullptr);
  CHECK(!slots.at("cmdb").handler);
  CHECK(slots.at("cmdb").error.find("inventory_every needs a plugin built against plugin ABI 1.2") !=
        std::string::npos);
  CHECK(slots.at("cmdb").error.find("bad_old_minor.so was built against 1.1") != std::string::npos);
  // Without inventory_every the same plugin serves changes as ever.
  cfg.handlers[0].inventory_every = std::chrono::seconds(0);
  auto plain = deliver::create_handlers(cfg, loader, nullptr);
  CHECK(plain.at("cmdb").handler);
}

TEST_CASE("plugins with the wrong ABI, no entry symbol, or not ELF are refused with one clear line") {
  test::TempDir dir;
  CHECK(refusal(test_plugin("bad_bad_major")).find("built for plugin ABI 2.2, this kubetrail speaks ABI 1.2") !=
        std::string::npos);
  CHECK(refusal(test_plugin("bad_too_new_minor")).find("built for plugin ABI 1.3, newer than this kubetrail") !=
        std::string::npos);
  CHECK(refusal(test_plugin("bad_refuses_host")).find("refused this host (host ABI 1.2)") != std::string::npos);
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
  CHECK(c.handlers.at("second").error.find("bad_bad_major.so: built for plugin ABI 2.") != std::string::npos);
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

TEST_CASE("a create() that says RETRY is tried again with the handler's retry policy, then given up on") {
  test::TempDir dir;
  auto cfg_with = [&](int attempts) {
    return config::parse("[plugins]\ndir = \"" + std::string(TEST_PLUGIN_DIR) +
                             "\"\n[[handlers]]\nname = \"late\"\nplugin = \"c_recorder\"\nretry = { attempts = " +
                             std::to_string(attempts) + ", initial_ms = 1, max_ms = 5 }\nconfig = { path = \"" +
                             (dir / "out.txt").string() + "\", retry_create_until = \"" + (dir / "up").string() +
                             "\" }\n[[routes]]\nchain = [\"late\"]\n",
                         "t.toml");
  };
  plugin::PluginLoader loader{TEST_PLUGIN_DIR};
  Metrics metrics;
  {
    auto cfg = cfg_with(5);
    std::vector<std::chrono::milliseconds> sleeps;
    auto handlers = deliver::create_handlers(cfg, loader, &metrics, [&](std::chrono::milliseconds d) {
      sleeps.push_back(d);
      if (sleeps.size() == 2) test::write_file(dir / "up", "");  // the broker comes up
    });
    REQUIRE(handlers.at("late").handler);
    CHECK(sleeps.size() == 2);  // failed twice, created at the third attempt
  }
  fs::remove(dir / "up");
  {
    auto cfg = cfg_with(2);
    int slept = 0;
    auto handlers = deliver::create_handlers(cfg, loader, &metrics, [&](std::chrono::milliseconds) { ++slept; });
    CHECK_FALSE(handlers.at("late").handler);
    CHECK(slept == 1);
    CHECK(handlers.at("late").error.find("not there yet (transient), gave up after 2 attempts") != std::string::npos);
  }
}
