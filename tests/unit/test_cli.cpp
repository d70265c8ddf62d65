// The kubetrail binary end to end: replay through the real log plugin, the
// README's commands, exit statuses.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "helpers.hpp"

using nlohmann::json;

namespace {
std::string example(const std::string& rel) { return (test::source_dir() / "examples" / rel).string(); }

// "TYPE resource name path path...": compared as strings so that a failure
// prints the whole list.
std::vector<std::string> parse_lines(const std::string& out) {
  std::vector<std::string> seen;
  for (const auto& line : test::lines_of(out)) {
    auto j = json::parse(line);
    std::string s = j["type"].get<std::string>() + " " + j["resource"]["resource"].get<std::string>() + " " +
                    j["name"].get<std::string>();
    for (auto& c : j["changes"]) s += " " + c["path"].get<std::string>();
    seen.push_back(s);
  }
  return seen;
}
}  // namespace

TEST_CASE("cli: version names the plugin ABI") {
  test::TempDir dir;
  auto r = test::kubetrail("version", dir);
  CHECK(r.status == 0);
  CHECK(r.out.find("plugin ABI 1.2") != std::string::npos);
}

TEST_CASE("cli: replay of the bundled example with the example config prints exactly the expected change sets") {
  test::TempDir dir;
  auto r =
      test::kubetrail("replay --config " + example("kubetrail.toml") + " " + example("recordings/rollout/*.json"), dir);
  CHECK(r.status == 0);
  CAPTURE(r.err);
  std::vector<std::string> want{
      "Added configmaps kube-root-ca.crt",
      "Added secrets default-token-lzvhh",
      "Added deployments checkout",
      "Added services checkout",
      "Added configmaps checkout-config",
      "Added secrets checkout-db",
      "Modified deployments checkout spec.template.spec.containers[name=app].image",
      "Modified deployments checkout spec.replicas",
      "Modified configmaps checkout-config data.timeout_ms",
      "Modified secrets checkout-db data.password",
      "Modified deployments checkout spec.template.spec.containers[name=app].env[name=FEATURE_X]",
      "Modified deployments checkout metadata.labels.tier",
      "Modified services checkout metadata.annotations.owner",
      "Modified deployments checkout spec.template.metadata.annotations",
      "Modified services checkout spec.ports[port=9090]",
      "Deleted configmaps checkout-config",
      "Deleted deployments checkout",
  };
  CHECK(parse_lines(r.out) == want);
  // Every line is a complete schema v1 change set, and no secret leaks.
  for (const auto& line : test::lines_of(r.out)) {
    auto j = json::parse(line);
    CHECK(j["schemaVersion"] == "kubetrail.dev/v1");
    CHECK(j["cluster"] == "demo");
    // docs/CHANGESETS.md: Added/Modified by the version changed to, Deleted once per uid.
    CHECK(j["id"] == "demo/" + j["uid"].get<std::string>() + "/" +
                         (j["type"] == "Deleted" ? std::string("deleted") : j["resourceVersion"].get<std::string>()));
    CHECK(j.contains("observedAt"));
    CHECK(j.contains("summary"));
  }
  for (const auto& line : test::lines_of(test::read_file(example("recordings/rollout/secrets.json")))) {
    auto ev = json::parse(line);
    for (auto& [k, v] : ev["object"]["data"].items()) {
      CAPTURE(k);
      CHECK(r.out.find(v.get<std::string>()) == std::string::npos);
    }
  }
  // The plaintext kubectl apply left in last-applied-configuration:
  CHECK(r.out.find("hunter2") == std::string::npos);
  CHECK(r.err.find("hunter2") == std::string::npos);
}

TEST_CASE("cli: a truncated stream reports the offset and delivers the events before it") {
  test::TempDir dir;
  auto lines = test::lines_of(test::read_file(example("recordings/rollout/deployments.json")));
  std::string prefix;
  for (int i = 0; i < 10; ++i) prefix += lines[i] + "\n";
  test::write_file(dir / "prefix.json", prefix);
  test::write_file(dir / "truncated.json", prefix + lines[10].substr(0, lines[10].size() / 2));
  auto whole =
      test::kubetrail("replay --config " + example("kubetrail.toml") + " " + (dir / "prefix.json").string(), dir);
  REQUIRE(whole.status == 0);
  auto cut =
      test::kubetrail("replay --config " + example("kubetrail.toml") + " " + (dir / "truncated.json").string(), dir);
  CHECK(cut.status == 1);
  CHECK(parse_lines(cut.out) == parse_lines(whole.out));
  CHECK(parse_lines(cut.out).size() >= 3);
  CHECK(cut.err.find("truncated.json: stream truncated: the event starting at byte offset " +
                     std::to_string(prefix.size()) + " is incomplete") != std::string::npos);
}

TEST_CASE("cli: a malformed event names file and byte offset - events before it are delivered") {
  test::TempDir dir;
  auto lines = test::lines_of(test::read_file(example("recordings/rollout/deployments.json")));
  std::string prefix = lines[0] + "\n" + lines[1] + "\n";
  test::write_file(dir / "bad.json",
                   prefix + "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":oops}}\n" + lines[2] + "\n");
  auto r = test::kubetrail("replay --config " + example("kubetrail.toml") + " " + (dir / "bad.json").string(), dir);
  CHECK(r.status == 1);
  CHECK(parse_lines(r.out).size() == 1);  // the Added of the first event
  CHECK(r.err.find("bad.json: byte offset " + std::to_string(prefix.size()) + ": invalid JSON") != std::string::npos);
}

// A recorded event nested 2,000 deep (kube-apiserver allows 10,000) ended
// the replay there as "invalid JSON" (failed before: the change of the
// event after it was not delivered). It is skipped, named, and the rest
// is replayed, as the informer does on a watch.
TEST_CASE("cli: a recorded event nested too deep is skipped, named, and the events after it are delivered") {
  test::TempDir dir;
  auto lines = test::lines_of(test::read_file(example("recordings/rollout/deployments.json")));
  std::string prefix = lines[0] + "\n" + lines[1] + "\n", rest;
  for (size_t i = 2; i < lines.size(); ++i) rest += lines[i] + "\n";
  const std::string deep = R"({"type":"MODIFIED","object":{"metadata":{"name":"x"},"spec":)" + std::string(2000, '[') +
                           std::string(2000, ']') + "}}\n";
  test::write_file(dir / "deep.json", prefix + deep + rest);
  test::write_file(dir / "plain.json", prefix + rest);
  const std::string replay = "replay --config " + example("kubetrail.toml") + " ";
  auto r = test::kubetrail(replay + (dir / "deep.json").string(), dir);
  auto plain = test::kubetrail(replay + (dir / "plain.json").string(), dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("deep.json: byte offset " + std::to_string(prefix.size()) +
                   ": event nested deeper than 1024 levels, skipped") != std::string::npos);
  REQUIRE(plain.status == 0);
  CHECK(parse_lines(plain.out).size() > 1);
  // Every change set of the recording without it.
  CHECK(parse_lines(r.out).size() == parse_lines(plain.out).size());
}

// The informer reports a DELETED event whose object is nested too deep
// from the last version it read (watch/informer.cpp, deleted_too_deep);
// replay skipped it like any deep event, so the object's deletion was
// missing from what a recording replays (failed before: the last line, the
// Deleted, was not printed).
TEST_CASE("cli: a recorded deletion nested too deep is reported from the last version read") {
  test::TempDir dir;
  auto lines = test::lines_of(test::read_file(example("recordings/rollout/deployments.json")));
  REQUIRE(lines.back().find(R"("type":"DELETED")") != std::string::npos);
  auto deleted = json::parse(lines.back());
  std::string rest;
  for (size_t i = 0; i + 1 < lines.size(); ++i) rest += lines[i] + "\n";
  deleted["object"]["spec"] = "@DEEP@";
  std::string deep_deleted = deleted.dump();
  deep_deleted.replace(deep_deleted.find(R"("@DEEP@")"), 8, std::string(2000, '[') + std::string(2000, ']'));
  test::write_file(dir / "deep.json", rest + deep_deleted + "\n");
  test::write_file(dir / "plain.json", rest + lines.back() + "\n");
  const std::string replay = "replay --config " + example("kubetrail.toml") + " ";
  auto r = test::kubetrail(replay + (dir / "deep.json").string(), dir);
  auto plain = test::kubetrail(replay + (dir / "plain.json").string(), dir);
  REQUIRE(plain.status == 0);
  REQUIRE_FALSE(parse_lines(plain.out).empty());
  CHECK(parse_lines(plain.out).back() == "Deleted deployments checkout");
  CHECK(r.status == 0);  // handled, not skipped
  CHECK(parse_lines(r.out) == parse_lines(plain.out));
  CHECK(r.err.find("deep.json: byte offset " + std::to_string(rest.size()) +
                   ": deleted while nested deeper than 1024 levels: reported from the last version read") !=
        std::string::npos);
  // Deleted at the event's resourceVersion, as the plain event says.
  CHECK(json::parse(test::lines_of(r.out).back())["resourceVersion"] ==
        deleted["object"]["metadata"]["resourceVersion"]);
}

TEST_CASE("cli: the README's main command replays with the built-in config") {
  test::TempDir dir;
  auto r = test::kubetrail("replay " + example("recordings/rollout/*.json"), dir);
  CHECK(r.status == 0);
  CHECK(r.out.find("Modified Deployment shop/checkout: container app image registry.example.com/checkout:1.4.2 → "
                   "registry.example.com/checkout:1.5.0 (by kubectl-set)") != std::string::npos);
  CHECK(r.err.find("83 events from 6 file(s)") != std::string::npos);
}

TEST_CASE("cli: check-config names file, line and key - plugins lists the log plugin") {
  test::TempDir dir;
  auto ok = test::kubetrail("check-config --config " + example("kubetrail.toml"), dir);
  CHECK(ok.status == 0);
  CHECK(ok.out.find("OK (1 handlers, 1 routes") != std::string::npos);

  test::write_file(dir / "bad.toml",
                   "[[handlers]]\nname = \"a\"\nplugin = \"log\"\nconfig = { format = \"yaml\" }\n"
                   "[[routes]]\nchain = [\"a\"]\n");
  auto bad = test::kubetrail("check-config --config " + (dir / "bad.toml").string(), dir);
  CHECK(bad.status == 2);
  CHECK(bad.err.find("bad.toml:1: handler \"a\" (plugin log): key \"config.format\"") != std::string::npos);

  test::write_file(dir / "typo.toml", "[watch]\nresorces = []\n");
  auto typo = test::kubetrail("check-config --config " + (dir / "typo.toml").string(), dir);
  CHECK(typo.status == 2);
  CHECK(typo.err.find("typo.toml:2: unknown key \"watch.resorces\"") != std::string::npos);

  auto list = test::kubetrail("plugins -v", dir);
  CHECK(list.status == 0);
  CHECK(list.out.find("  log 0.1.0  ABI 1.2") != std::string::npos);
  CHECK(list.out.find("\"max_size_mb\"") != std::string::npos);
}

TEST_CASE("cli: diff of two manifests exits 0 when equal, 1 when different, 2 on error") {
  test::TempDir dir;
  std::string a = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  resourceVersion: "1"
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.25
      - name: sidecar
        image: envoy:1
)";
  std::string b = a;
  b.replace(b.find("nginx:1.25"), 10, "nginx:1.27");
  b.replace(b.find("resourceVersion: \"1\""), 20, "resourceVersion: \"9\"");
  test::write_file(dir / "a.yaml", a);
  test::write_file(dir / "b.yaml", b);
  auto same = test::kubetrail("diff " + (dir / "a.yaml").string() + " " + (dir / "a.yaml").string(), dir);
  CHECK(same.status == 0);
  CHECK(same.out.empty());
  auto d = test::kubetrail("diff " + (dir / "a.yaml").string() + " " + (dir / "b.yaml").string(), dir);
  CHECK(d.status == 1);
  CHECK(d.out ==
        "Modified Deployment shop/web: container web image nginx:1.25 → nginx:1.27\n"
        "  spec.template.spec.containers[name=web].image: \"nginx:1.25\" → \"nginx:1.27\"\n");
  auto j = test::kubetrail("diff --output json " + (dir / "a.yaml").string() + " " + (dir / "b.yaml").string(), dir);
  CHECK(j.status == 1);
  CHECK(json::parse(j.out)["changes"][0]["path"] == "spec.template.spec.containers[name=web].image");
  test::write_file(dir / "broken.yaml", "a: [1, 2\n");
  auto e = test::kubetrail("diff " + (dir / "a.yaml").string() + " " + (dir / "broken.yaml").string(), dir);
  CHECK(e.status == 2);
  CHECK(e.err.find("broken.yaml:") != std::string::npos);
}

TEST_CASE("cli: diff pairs multi-document YAML by identity and keys custom lists from a CRD in the input") {
  test::TempDir dir;
  std::string crd = test::read_file(test::source_dir() / "tests/fixtures/crd-widgets.json");
  auto w = json::parse(test::read_file(test::source_dir() / "tests/fixtures/widget.json"));
  std::string old_doc =
      crd + "\n---\n" + w.dump() + "\n---\n" +
      R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"gone","namespace":"shop"},"data":{"a":"1"}})";
  auto& eps = w["spec"]["endpoints"];
  std::swap(eps[0], eps[1]);
  eps[1]["port"] = 8443;  // a.example.com, now second
  std::string new_doc =
      crd + "\n---\n" + w.dump() + "\n---\n" +
      R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"new","namespace":"shop"},"data":{}})";
  test::write_file(dir / "old.yaml", old_doc);  // JSON documents are YAML too
  test::write_file(dir / "new.yaml", new_doc);
  auto r =
      test::kubetrail("diff --output json " + (dir / "old.yaml").string() + " " + (dir / "new.yaml").string(), dir);
  CHECK(r.status == 1);
  CAPTURE(r.err);
  CHECK(parse_lines(r.out) == std::vector<std::string>{"Modified widgets blue spec.endpoints[host=a.example.com].port",
                                                       "Added configmaps new", "Deleted configmaps gone"});
}

TEST_CASE("cli: every config shipped in the repo passes check-config") {
  test::TempDir dir;
  // Every .toml under examples/ and packaging/, found rather than listed (a
  // list named a config after it had moved). all-handlers.toml and
  // event-exporter.toml name secrets from the environment and a site's own
  // script: checked against the schemas only (--schema-only), as a CI job
  // without those secrets would check them; the others completely.
  std::vector<std::filesystem::path> configs;
  for (const char* top : {"examples", "packaging"})
    for (const auto& e : std::filesystem::recursive_directory_iterator(test::source_dir() / top))
      if (e.path().extension() == ".toml") configs.push_back(e.path());
  CHECK(configs.size() >= 4);  // examples x2, container, kustomize base (ha: the base with KUBETRAIL_LEADER_ELECTION)
  for (const auto& path : configs) {
    const bool needs_secrets = path.filename() == "all-handlers.toml" || path.filename() == "event-exporter.toml";
    std::string flags = needs_secrets ? " --schema-only" : "";
    auto r = test::kubetrail("check-config" + flags + " --config " + path.string(), dir);
    CAPTURE(path.string());
    CAPTURE(r.err);
    CHECK(r.status == 0);
  }
}

TEST_CASE("cli: replay accepts pretty-printed events back to back (older kubectl)") {
  test::TempDir dir;
  std::string pretty;
  for (const auto& line : test::lines_of(test::read_file(example("recordings/rollout/deployments.json"))))
    pretty += json::parse(line).dump(4) + "\n";
  test::write_file(dir / "pretty.json", pretty);
  auto a = test::kubetrail("replay --config " + example("kubetrail.toml") + " " + (dir / "pretty.json").string(), dir);
  auto b = test::kubetrail(
      "replay --config " + example("kubetrail.toml") + " " + example("recordings/rollout/deployments.json"), dir);
  CHECK(a.status == 0);
  CHECK(parse_lines(a.out).size() == 7);
  CHECK(parse_lines(a.out) == parse_lines(b.out));
}

// Issue 13, item 5: `kubetrail diff` of hostile manifests. Before: a
// 565-byte YAML alias bomb hung, a 300,000-character scalar overflowed the
// stack in std::regex (killed by a signal), 1e400 and a bare `metadata:`
// ended as "internal error" with exit 1 - the status that means "different".
TEST_CASE("cli: diff of hostile manifests answers 0, 1 or 2 with the file named, never crashes or hangs") {
  test::TempDir dir;
  auto file = [&](const std::string& name, const std::string& text) {
    test::write_file(dir / name, text);
    return (dir / name).string();
  };
  // A billion laughs: nine levels of nine aliases.
  std::string bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'i'; ++c) {
    std::string prev(1, static_cast<char>(c - 1));
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev +
            ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n";
  }
  bomb = "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata:\n" + [&] {
    std::string indented;
    for (const auto& line : test::lines_of(bomb)) indented += "  " + line + "\n";
    return indented;
  }();
  std::string plain = file("plain.yaml", "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n");
  auto r = test::kubetrail("diff " + plain + " " + file("bomb.yaml", bomb), dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("bomb.yaml") != std::string::npos);
  CHECK(r.err.find("nodes") != std::string::npos);

  std::string big =
      "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata:\n  v: " + std::string(300000, '7') + "x\n";
  r = test::kubetrail("diff " + file("big1.yaml", big) + " " + file("big2.yaml", big), dir);
  CHECK(r.status == 0);

  r = test::kubetrail("diff " + plain + " " +
                          file("inf.yaml", "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata: {v: 1e400}\n"),
                      dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("inf.yaml:4") != std::string::npos);
  CHECK(r.err.find("out of range") != std::string::npos);

  // Found by fuzz_manifest: nlohmann's out_of_range for 1e400 in a JSON
  // manifest escaped load_manifests (only parse_error was caught).
  r = test::kubetrail("diff " + plain + " " + file("inf.json", R"({"kind":"ConfigMap","data":{"v":1e400}})"), dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("inf.json") != std::string::npos);

  std::string bare = file("bare.yaml", "kind: ConfigMap\napiVersion: v1\nmetadata:\n");
  r = test::kubetrail("diff " + bare + " " + bare, dir);
  CHECK(r.status == 0);
  CHECK(r.err.find("internal error") == std::string::npos);

  // Found by fuzz_manifest: yaml-cpp's LoadAll looped forever on these 13
  // bytes (growing memory until killed); documents are split by kubetrail now.
  r = test::kubetrail("diff " + plain + " " + file("loop.yaml", ",kinata>00}\n?"), dir);
  CHECK((r.status == 1 || r.status == 2));
  std::string multi = file("multi.yaml",
                           "%YAML 1.2\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n...\n"
                           "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n");
  r = test::kubetrail("diff --output json " + plain + " " + multi, dir);
  CHECK(r.status == 1);
  CHECK(test::lines_of(r.out).size() == 1);  // x equal, y added

  // 100,000 nested brackets in a JSON manifest killed kubetrail diff with
  // SIGSEGV (nlohmann's parse is iterative, its copies and dumps are not);
  // now an error naming the file and the byte where the depth ran out.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  r = test::kubetrail(
      "diff " + plain + " " +
          file("deep.json", R"({"kind":"ConfigMap","metadata":{"name":"x"},"data":{"v":)" + deep + "}}"),
      dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("deep.json: invalid JSON at byte offset 1078: nested deeper than 1024 levels") != std::string::npos);
  // Deep YAML, flow and block: yaml-cpp's own depth limit, named.
  for (const std::string& yaml :
       {"kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata:\n  v: " + deep + "\n", [] {
          std::string block = "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\ndata:\n";
          for (int i = 1; i <= 3000; ++i) block += std::string(size_t(i) * 2, ' ') + "- \n";
          return block;
        }()}) {
    r = test::kubetrail("diff " + plain + " " + file("deep.yaml", yaml), dir);
    CHECK(r.status == 2);
    CHECK(r.err.find("deep.yaml:") != std::string::npos);
    CHECK(r.err.find(": invalid YAML: nested too deep") != std::string::npos);  // was yaml-cpp's "bad file"
  }

  std::string nometa = file("nometa.json", R"({"kind":"ConfigMap"})");
  r = test::kubetrail("diff " + nometa + " " + file("nometa2.json", R"({"kind":"ConfigMap","data":{"a":"1"}})"), dir);
  CHECK(r.status == 1);
  r = test::kubetrail("diff " + nometa + " " + file("odd.json", R"({"kind":7,"metadata":"x"})"), dir);
  CHECK(r.status != -1);  // answered, whatever it found
  CHECK(r.err.find("internal error") == std::string::npos);
}

// Issue 13, item 11: --log-level bogus was accepted and silenced every line
// (spdlog's from_str returns "off"); check-config said OK for handler configs
// that create() then refused, and an enum error did not say what is allowed.
TEST_CASE("cli: a bad --log-level is refused, and check-config catches what run would refuse at start") {
  test::TempDir dir;
  auto r = test::kubetrail("replay --log-level bogus " + example("recordings/rollout/deployments.json"), dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("bogus not in {trace,debug,info,warn,error}") != std::string::npos);
  r = test::kubetrail("check-config --log-level loud", dir);
  CHECK(r.status == 2);

  auto check = [&](const std::string& name, const std::string& handler) {
    test::write_file(dir / name, "[[handlers]]\nname = \"h\"\n" + handler + "\n[[routes]]\nchain = [\"h\"]\n");
    return test::kubetrail("check-config --config " + (dir / name).string(), dir);
  };
  r = check("both.toml", "plugin = \"webhook\"\nconfig = { url = \"http://127.0.0.1:1/\", url_env = \"X\" }");
  CHECK(r.status == 2);
  CHECK(r.err.find("exactly one of url and url_env") != std::string::npos);
  r = check("neither.toml", "plugin = \"webhook\"\nconfig = { format = \"json\" }");
  CHECK(r.status == 2);
  r = check("nocmd.toml", "plugin = \"exec\"\nconfig = { command = [\"/no/such/kubetrail-cmd\"] }");
  CHECK(r.status == 2);
  CHECK(r.err.find("/no/such/kubetrail-cmd") != std::string::npos);
  r = check("nocmd2.toml", "plugin = \"exec\"\nconfig = { command = [\"no-such-kubetrail-cmd\"] }");
  CHECK(r.status == 2);
  CHECK(r.err.find("found in PATH") != std::string::npos);
  r = check("unset.toml", "plugin = \"webhook\"\nconfig = { url_env = \"KUBETRAIL_TEST_SURELY_UNSET\" }");
  CHECK(r.status == 2);
  CHECK(r.err.find("KUBETRAIL_TEST_SURELY_UNSET") != std::string::npos);
  r = check("enum.toml", "plugin = \"webhook\"\nconfig = { url = \"http://127.0.0.1:1/\", format = \"xml\" }");
  CHECK(r.status == 2);
  CHECK(r.err.find("(allowed: \"json\" \"cloudevents\" \"cloudevents-binary\")") != std::string::npos);
  r = check("fine.toml", "plugin = \"exec\"\nconfig = { command = [\"true\"] }");
  CHECK(r.status == 0);
}

// Failed before 2026-12-04: every subcommand's --help printed the same
// global usage, and options were parsed by hand.
TEST_CASE("cli: each subcommand's --help lists its own options, and a usage error points to it") {
  test::TempDir dir;
  auto r = test::kubetrail("run --help", dir);
  CHECK(r.status == 0);
  for (const char* want : {"--config", "--kubeconfig", "--context", "--plugins-dir", "--log-level", "--reset-state",
                           "/etc/kubetrail/kubetrail.toml", "KUBETRAIL_STATE_PATH", "KUBETRAIL_SERVER_LISTEN"}) {
    CAPTURE(want);
    CHECK(r.out.find(want) != std::string::npos);
  }
  CHECK(r.out.find("--schema-only") == std::string::npos);
  r = test::kubetrail("check-config --help", dir);
  CHECK(r.out.find("--schema-only") != std::string::npos);
  CHECK(r.out.find("--reset-state") == std::string::npos);
  r = test::kubetrail("help rbac", dir);
  CHECK(r.status == 0);
  CHECK(r.out.find("--service-account") != std::string::npos);
  r = test::kubetrail("run --bogus", dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("--bogus") != std::string::npos);
  CHECK(r.err.find("kubetrail run --help") != std::string::npos);
  r = test::kubetrail("diff --output xml a b", dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("xml not in {text,json}") != std::string::npos);
  r = test::kubetrail("diff only-one.yaml", dir);
  CHECK(r.status == 2);
  r = test::kubetrail("", dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("check-config") != std::string::npos);
  r = test::kubetrail("--version", dir);
  CHECK(r.status == 0);
  CHECK(r.out.starts_with("kubetrail "));
}

// Failed before 2026-12-04: no KUBETRAIL_* variable was read.
TEST_CASE("cli: KUBETRAIL_* variables set the config file and override its keys, and a bad value names the variable") {
  test::TempDir dir;
  const std::string recordings = example("recordings/rollout/*.json");
  auto by_flag = test::kubetrail("replay --config " + example("kubetrail.toml") + " " + recordings, dir);
  REQUIRE(by_flag.status == 0);
  auto by_env = test::kubetrail("replay " + recordings, dir, "KUBETRAIL_CONFIG=" + example("kubetrail.toml"));
  REQUIRE(by_env.status == 0);
  CHECK(parse_lines(by_env.out) == parse_lines(by_flag.out));

  auto renamed = test::kubetrail("replay " + recordings, dir,
                                 "KUBETRAIL_CONFIG=" + example("kubetrail.toml") + " KUBETRAIL_CLUSTER_NAME=prod-eu");
  REQUIRE(renamed.status == 0);
  auto lines = test::lines_of(renamed.out);
  REQUIRE(!lines.empty());
  for (const auto& line : lines) CHECK(json::parse(line)["cluster"] == "prod-eu");

  auto r = test::kubetrail("check-config --schema-only", dir, "KUBETRAIL_LEADER_ELECTION=yes");
  CHECK(r.status == 2);
  CHECK(r.err.find("KUBETRAIL_LEADER_ELECTION: expected true or false, got \"yes\"") != std::string::npos);
  r = test::kubetrail("check-config --schema-only", dir, "KUBETRAIL_LOG_FORMAT=xml");
  CHECK(r.status == 2);
  CHECK(r.err.find("$KUBETRAIL_LOG_FORMAT") != std::string::npos);
  r = test::kubetrail("version", dir, "KUBETRAIL_STATEPATH=/tmp/x");
  CHECK(r.status == 0);
  CHECK(r.err.find("KUBETRAIL_STATEPATH is not one kubetrail reads") != std::string::npos);
}

TEST_CASE("cli: bash completion offers subcommands, a subcommand's own options and an option's choices") {
  test::TempDir dir;
  auto r = test::kubetrail("completion bash", dir);
  REQUIRE(r.status == 0);
  test::write_file(dir / "completion.bash", r.out);
  auto complete = [&](const std::string& words, int cword) {
    test::write_file(dir / "ask.bash", "source " + (dir / "completion.bash").string() + "\nCOMP_WORDS=(" + words +
                                           ")\nCOMP_CWORD=" + std::to_string(cword) +
                                           "\n_kubetrail\necho \"${COMPREPLY[*]}\"\n");
    std::string cmd = "bash " + (dir / "ask.bash").string() + " >" + (dir / "reply.txt").string() + " 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return test::read_file(dir / "reply.txt");
  };
  CHECK(complete("kubetrail ch", 1) == "check-config\n");
  CHECK(complete("kubetrail run --c", 2) == "--config --context\n");
  CHECK(complete("kubetrail check-config --s", 2) == "--schema-only\n");
  CHECK(complete("kubetrail run --log-level w", 3) == "warn\n");
  CHECK(complete("kubetrail diff --output ''", 3) == "text json\n");
}

// Issue 17's test: the bundled rollout recording replayed into a state
// store's history, then `history --summary` prints one line per object with
// its changes in order; filters and JSON output on the same history.
TEST_CASE("cli: history --summary after replay --state: one line per object, its changes oldest to newest") {
  test::TempDir dir;
  const std::string state = (dir / "state.db").string();
  auto r = test::kubetrail("replay --state " + state + " " + example("recordings/rollout/*.json"), dir);
  REQUIRE(r.status == 0);
  r = test::kubetrail("history --state " + state + " --summary --since 10m", dir);
  REQUIRE(r.status == 0);
  auto lines = test::lines_of(r.out);
  std::vector<std::string> deployment;
  for (const auto& l : lines)
    if (l.starts_with("deployments.apps shop/checkout ")) deployment.push_back(l);
  REQUIRE(deployment.size() == 1);  // one line for the object
  const std::string& d = deployment[0];
  CHECK(d.find("(7 change sets,") != std::string::npos);
  // In the order they happened: created, image, replicas, env, label, restart, deleted.
  size_t at = 0;
  for (const char* step : {"Added", "containers[name=app].image", "spec.replicas: 2 → 3", "env[name=FEATURE_X]",
                           "metadata.labels.tier", "restartedAt", "Deleted"}) {
    CAPTURE(step);
    auto next = d.find(step, at);
    REQUIRE(next != std::string::npos);
    at = next;
  }
  CHECK(d.find("[kubectl-set]") != std::string::npos);  // who
  // Secrets stay redacted in history too.
  CHECK(r.out.find("<redacted hmac:") != std::string::npos);

  // "What changed to deployment X, and who did it?" - one command.
  r = test::kubetrail("history --state " + state + " --since 1h -n shop --kind deployments --name checkout -o json",
                      dir);
  REQUIRE(r.status == 0);
  auto json_lines = test::lines_of(r.out);
  REQUIRE(json_lines.size() == 7);
  CHECK(json::parse(json_lines[1])["actor"]["manager"] == "kubectl-set");
  r = test::kubetrail("history --state " + state + " --path spec.replicas --kind deployments", dir);
  CHECK(r.out.find("spec.replicas: 2 → 3") != std::string::npos);
  CHECK(r.out.find("containers[name=app].image") == std::string::npos);
  // Without --state: the config's [state] path (a pod's mounted config).
  test::write_file(dir / "k.toml", "[state]\npath = \"" + state + "\"\n");
  r = test::kubetrail("history --config " + (dir / "k.toml").string() + " --since 1h --kind services", dir);
  CHECK(r.status == 0);
  CHECK(r.out.find("metadata.annotations.owner") != std::string::npos);
  // Nothing in a window before the replay; clear errors otherwise.
  r = test::kubetrail("history --state " + state + " --since 2h --until 1h", dir);
  CHECK(r.status == 0);
  CHECK(r.out.empty());
  r = test::kubetrail("history --state " + state + " --since yesterday", dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("--since \"yesterday\"") != std::string::npos);
  r = test::kubetrail("history --state " + (dir / "none.db").string(), dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("none.db-history") != std::string::npos);
}
