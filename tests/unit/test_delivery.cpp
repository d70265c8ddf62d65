// Asynchronous delivery (kubetrail run): per-handler queues and threads,
// chains, retries, dead letters and the durable outbox.
#include <doctest/doctest.h>

#include <thread>

#include "deliver/delivery_service.hpp"
#include "helpers.hpp"
#include "state/state_store.hpp"

using namespace kubetrail;
namespace fs = std::filesystem;

namespace {

diff::ChangeSet change(const std::string& name, const std::string& rv = "1") {
  diff::ChangeSet cs;
  cs.type = diff::ChangeType::modified;
  cs.cluster = "c";
  cs.resource = kube::resource_type_for("v1", "ConfigMap");
  cs.object_namespace = "ns";
  cs.name = name;
  cs.uid = "u-" + name;
  cs.resource_version = rv;
  cs.id = "c/u-" + name + "/" + rv;
  cs.changes = {{diff::FieldOp::replace, "data.a", "\"1\"", "\"2\""}};
  cs.summary = diff::summarize(cs);
  return cs;
}

// A config with handlers (TOML snippets) and routes, plus everything a
// DeliveryService needs, alive together.
struct Setup {
  config::Config cfg;
  plugin::PluginLoader loader{TEST_PLUGIN_DIR};
  server::Metrics metrics;
  std::map<std::string, deliver::HandlerSlot> handlers;
  route::Router router;
  deliver::DeliveryService service;
  Setup(const std::string& toml, state::StateStore* outbox)
      : cfg(config::parse("[plugins]\ndir = \"" + std::string(TEST_PLUGIN_DIR) + "\"\n" + toml, "t.toml")),
        handlers(deliver::create_handlers(cfg, loader, &metrics)),
        router(cfg.routes),
        service(handlers, cfg, router, &metrics, outbox) {
    service.start();
  }
};

std::string recorder(const std::string& name, const fs::path& file, const std::string& extra = "",
                     const std::string& retry = "{ attempts = 4, initial_ms = 1, max_ms = 5 }") {
  return "[[handlers]]\nname = \"" + name + "\"\nplugin = \"c_recorder\"\nretry = " + retry + "\nconfig = { path = \"" +
         file.string() + "\"" + extra + " }\n";
}

size_t lines(const fs::path& f) { return fs::exists(f) ? test::lines_of(test::read_file(f)).size() : 0; }

bool eventually(const std::function<bool()>& ok, int ms = 5000) {
  for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(std::chrono::milliseconds(10)))
    if (ok()) return true;
  return ok();
}

}  // namespace

TEST_CASE("delivery: RETRY twice then OK is delivered once, down the chain in order") {
  test::TempDir dir;
  Setup s(recorder("first", dir / "a.txt", ", retries_before_ok = 2") + recorder("second", dir / "b.txt") +
              "[[routes]]\nchain = [\"first\", \"second\"]\n",
          nullptr);
  s.service.submit(change("x"));
  CHECK(eventually([&] { return lines(dir / "b.txt") == 1; }));
  s.service.stop(std::chrono::seconds(5));
  CHECK(lines(dir / "a.txt") == 1);
  CHECK(s.service.stats().delivered == 2);
  CHECK(s.metrics.render().find("kubetrail_handler_deliveries_total{handler=\"first\",result=\"retry\"} 2") !=
        std::string::npos);
}

TEST_CASE("delivery: a handler that always fails dead-letters with the reason - the chain stops there") {
  test::TempDir dir;
  auto store = state::StateStore::open((dir / "s.db").string(), false);
  Setup s(recorder("bad", dir / "a.txt", ", status = \"fail\"") + recorder("after", dir / "b.txt") +
              "[[routes]]\nchain = [\"bad\", \"after\"]\n",
          store.get());
  s.service.submit(change("x"));
  CHECK(eventually([&] { return s.service.stats().dead == 1; }));
  s.service.stop(std::chrono::seconds(5));
  auto dead = store->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].id == "c/u-x/1");
  CHECK(dead[0].handler == "bad");
  CHECK(dead[0].reason == "configured to answer fail");
  CHECK(lines(dir / "b.txt") == 0);
}

TEST_CASE("delivery: a slow or failing handler does not delay the others") {
  test::TempDir dir;
  Setup s(
      recorder("stuck", dir / "a.txt", ", status = \"retry\"", "{ attempts = 100, initial_ms = 200, max_ms = 200 }") +
          recorder("fast", dir / "b.txt") + "[[routes]]\nchain = [\"stuck\"]\n[[routes]]\nchain = [\"fast\"]\n",
      nullptr);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) s.service.submit(change("n" + std::to_string(i)));
  CHECK(eventually([&] { return lines(dir / "b.txt") == 5; }, 2000));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  // /healthz's view: the stuck queue is named, the moving one is not.
  CHECK(eventually([&] { return !s.service.stuck(std::chrono::milliseconds(300)).empty(); }, 3000));
  CHECK(s.service.stuck(std::chrono::milliseconds(300)).starts_with("handler \"stuck\" has delivered nothing for"));
  s.service.stop(std::chrono::milliseconds(0));
}

TEST_CASE("delivery: the outbox delivers after a restart what was pending, and never an id twice") {
  test::TempDir dir;
  auto path = (dir / "s.db").string();
  {
    auto store = state::StateStore::open(path, false);
    Setup s(recorder("h", dir / "a.txt", ", status = \"retry\"", "{ attempts = 100, initial_ms = 50, max_ms = 50 }") +
                "[[routes]]\nchain = [\"h\"]\n",
            store.get());
    s.service.submit(change("x"));
    s.service.submit(change("y"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s.service.stop(std::chrono::milliseconds(0));  // stopped while the handler still fails
    CHECK(store->outbox_backlog() == 2);
  }
  auto store = state::StateStore::open(path, false);
  Setup s(recorder("h", dir / "a.txt") + "[[routes]]\nchain = [\"h\"]\n", store.get());
  CHECK(eventually([&] { return lines(dir / "a.txt") == 2; }));  // the leftovers, first
  s.service.submit(change("x"));                                 // the same id again: skipped
  s.service.submit(change("x", "2"));                            // a new resourceVersion: a new change set
  CHECK(eventually([&] { return lines(dir / "a.txt") == 3; }));
  s.service.stop(std::chrono::seconds(5));
  CHECK(lines(dir / "a.txt") == 3);
  CHECK(s.service.stats().skipped_duplicates == 1);
  CHECK(store->outbox_backlog() == 0);
}
