#include <doctest/doctest.h>

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "common/error.hpp"
#include "helpers.hpp"
#include "kube/discovery.hpp"
#include "kube/kubeconfig.hpp"

using namespace kubetrail;

namespace {
const char* kA = R"(apiVersion: v1
kind: Config
current-context: a
clusters:
- name: prod
  cluster:
    server: https://prod.example.com:6443/
    certificate-authority: certs/ca.pem
    tls-server-name: api.internal
- name: shared
  cluster:
    server: https://from-a.example.com
users:
- name: alice
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
- name: bob
  user:
    tokenFile: bob.token
contexts:
- name: a
  context: {cluster: prod, user: alice, namespace: shop}
- name: b
  context: {cluster: shared, user: bob}
)";
const char* kB = R"(apiVersion: v1
kind: Config
current-context: b
clusters:
- name: shared
  cluster:
    server: https://from-b.example.com
users:
- name: carol
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./bin/get-token
      args: ["--region", "eu"]
      env: [{name: AWS_PROFILE, value: prod}]
- name: dave
  user:
    username: dave
    password: pw
contexts:
- name: c
  context: {cluster: shared, user: carol}
- name: d
  context: {cluster: shared, user: dave}
)";
}  // namespace

TEST_CASE("kubeconfig: certificates from data and files - paths relative to their file") {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "certs");
  test::write_file(dir / "certs/ca.pem", "CA PEM");
  test::write_file(dir / "a.yaml", kA);
  auto c = kube::load_kubeconfig({(dir / "a.yaml").string()}, "");
  CHECK(c.server == "https://prod.example.com:6443");
  CHECK(c.ca_pem == "CA PEM");
  CHECK(c.tls_server_name == "api.internal");
  CHECK(c.client_cert_pem == "cert");
  CHECK(c.client_key_pem == "key");
  CHECK(c.default_namespace == "shop");
  CHECK(c.source.find("(context a)") != std::string::npos);
}

TEST_CASE("kubeconfig: files merge as kubectl merges $KUBECONFIG: the first to set a name wins") {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "certs");
  test::write_file(dir / "certs/ca.pem", "CA");
  test::write_file(dir / "a.yaml", kA);
  test::write_file(dir / "b.yaml", kB);
  std::vector<std::string> files{(dir / "a.yaml").string(), (dir / "missing.yaml").string(), (dir / "b.yaml").string()};
  auto cur = kube::load_kubeconfig(files, "");
  CHECK(cur.server == "https://prod.example.com:6443");  // current-context from a.yaml
  auto b = kube::load_kubeconfig(files, "b");
  CHECK(b.server == "https://from-a.example.com");  // "shared" defined by a.yaml first
  CHECK(b.token_file == (dir / "bob.token").string());
  auto c = kube::load_kubeconfig(files, "c");
  REQUIRE(c.exec);
  CHECK(c.exec->api_version == "client.authentication.k8s.io/v1beta1");
  CHECK(c.exec->command == (dir / "bin/get-token").string());
  CHECK(c.exec->args == std::vector<std::string>{"--region", "eu"});
  CHECK(c.exec->env == std::vector<std::pair<std::string, std::string>>{{"AWS_PROFILE", "prod"}});
  auto d = kube::load_kubeconfig(files, "d");
  CHECK(d.username == "dave");
  CHECK(d.password == "pw");
}

TEST_CASE("kubeconfig: errors name the file and the key") {
  test::TempDir dir;
  test::write_file(dir / "a.yaml", kA);
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({(dir / "a.yaml").string()}, "nope"),
                       doctest::Contains("context \"nope\" not found"), Error);
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({(dir / "a.yaml").string()}, "a"), doctest::Contains("certs/ca.pem"),
                       Error);  // the CA file is missing
  test::write_file(dir / "bad.yaml", "clusters: [\n");
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({(dir / "bad.yaml").string()}, ""), doctest::Contains("bad.yaml:"), Error);
  test::write_file(dir / "noserver.yaml",
                   "clusters: [{name: x, cluster: {}}]\ncontexts: [{name: x, context: {cluster: x}}]\n"
                   "current-context: x\n");
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({(dir / "noserver.yaml").string()}, ""),
                       doctest::Contains("clusters[x]: key \"server\" is missing"), Error);
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({(dir / "none.yaml").string()}, ""),
                       doctest::Contains("no kubeconfig found"), Error);
}

TEST_CASE("in-cluster config comes from the service account and the service env") {
  test::TempDir dir;
  test::write_file(dir / "token", "sa-token\n");
  test::write_file(dir / "ca.crt", "SA CA");
  test::write_file(dir / "namespace", "kubetrail");
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = kube::in_cluster(dir.path().string());
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  REQUIRE(c);
  CHECK(c->server == "https://10.0.0.1:443");
  CHECK(c->token_file == (dir / "token").string());
  CHECK(c->ca_pem == "SA CA");
  CHECK(c->default_namespace == "kubetrail");
  CHECK_FALSE(kube::in_cluster(dir.path().string()));  // without the env: not in a cluster
}

TEST_CASE("discovery resolves plural, singular, kind, short name and plural.group - unknown names get close matches") {
  auto res = [](std::string g, std::string plural, std::string kind, std::vector<std::string> shorts) {
    kube::ApiResource r;
    r.type = model::ResourceType{g, "v1", plural, kind, true};
    r.singular = kind;
    for (auto& c : r.singular) c = static_cast<char>(std::tolower(c));
    r.short_names = std::move(shorts);
    r.verbs = {"get", "list", "watch"};
    return r;
  };
  kube::Discovery d({res("", "configmaps", "ConfigMap", {"cm"}), res("apps", "deployments", "Deployment", {"deploy"}),
                     res("example.com", "widgets", "Widget", {}), res("other.io", "widgets", "Widget", {})});
  CHECK(d.resolve("deployments").value().group == "apps");
  CHECK(d.resolve("deployment").value().resource == "deployments");
  CHECK(d.resolve("Deployment").value().resource == "deployments");
  CHECK(d.resolve("deploy").value().resource == "deployments");
  CHECK(d.resolve("cm").value().resource == "configmaps");
  CHECK(d.resolve("widgets.other.io").value().group == "other.io");
  CHECK(d.resolve("widgets").value().group == "example.com");  // first in discovery order
  auto bad = d.resolve("deploymnets");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error() == "the server has no resource \"deploymnets\"; close matches: deployments.apps (apps/v1)");
}

// A discovery document that is JSON but not the document asked for - `{}`
// from a proxy, a group list without `groups`, resources that are not an
// array - was read as a server that serves nothing there. At re-discovery
// every informer of the missing resources was stopped as "not served any
// more" (and restarted as "newly served" once discovery came back, its
// objects reported Added): changes in between were lost. Now such an
// answer fails the discovery, and re-discovery keeps watching with what it
// had (failed before: no error, fewer resources).
TEST_CASE("discovery: an answer that is not the discovery document asked for is an error naming the path") {
  std::map<std::string, std::string> docs = {
      {"/api", R"({"kind":"APIVersions","versions":["v1"]})"},
      {"/api/v1",
       R"({"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"configmaps","singularName":"",)"
       R"("namespaced":true,"kind":"ConfigMap","verbs":["list","watch"]}]})"},
      {"/apis",
       R"({"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"apps","versions":[{"groupVersion":"apps/v1",)"
       R"("version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}}]})"},
      {"/apis/apps/v1",
       R"({"kind":"APIResourceList","groupVersion":"apps/v1","resources":[{"name":"deployments","singularName":"",)"
       R"("namespaced":true,"kind":"Deployment","verbs":["list","watch"]}]})"}};
  std::mutex mu;
  httplib::Server http;
  http.Get(".*", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    auto it = docs.find(req.path);
    if (it == docs.end()) {
      res.status = 404;
      return;
    }
    res.set_content(it->second, "application/json");
  });
  const int port = http.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { http.listen_after_bind(); });
  for (int i = 0; i < 500 && !http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {
    kube::Client client([&] {
      kube::Connection c;
      c.server = "http://127.0.0.1:" + std::to_string(port);
      return c;
    }());
    CHECK(kube::Discovery::fetch(client).resources().size() == 2);
    const std::map<std::string, std::vector<std::string>> bad = {
        {"/api", {"{}", "[]", R"({"versions":"v1"})"}},
        {"/apis", {"{}", R"("ok")", R"({"kind":"APIGroupList","groups":{}})"}},
        {"/api/v1", {"{}", R"({"resources":5})"}},
        {"/apis/apps/v1", {R"({"status":"healthy"})", "[]"}}};
    for (const auto& [path, answers] : bad) {
      std::string good;
      {
        std::lock_guard lock(mu);
        good = docs[path];
      }
      for (const auto& answer : answers) {
        CAPTURE(path);
        CAPTURE(answer);
        {
          std::lock_guard lock(mu);
          docs[path] = answer;
        }
        const std::string expected = "GET " + path + ": the answer is not";
        CHECK_THROWS_WITH_AS(kube::Discovery::fetch(client), doctest::Contains(expected.c_str()), Error);
      }
      std::lock_guard lock(mu);
      docs[path] = good;
    }
    // What kube-apiserver may write for an empty list of them: null, or [].
    {
      std::lock_guard lock(mu);
      docs["/apis/apps/v1"] = R"({"kind":"APIResourceList","groupVersion":"apps/v1","resources":null})";
      docs["/apis"] = R"({"kind":"APIGroupList","groups":[]})";
    }
    CHECK(kube::Discovery::fetch(client).resources().size() == 1);
  }
  http.stop();
  serving.join();
}

// Issue 13, item 6: yaml-cpp's InvalidNode, BadSubscript and
// TypedBadConversion escaped load_kubeconfig ("kubetrail run: internal
// error: invalid node ..." with no file name), e.g. for a clusters entry
// with no cluster: key. Every odd shape is now a kubetrail::Error naming the file.
TEST_CASE("kubeconfig: odd shapes are errors naming the file, never yaml-cpp's exceptions") {
  test::TempDir dir;
  const char* shapes[] = {
      "clusters: [{name: x}]\ncontexts: [{name: x, context: {cluster: x}}]\ncurrent-context: x\n",
      "clusters: [{name: x, cluster: [1, 2]}]\ncontexts: [{name: x, context: {cluster: x}}]\ncurrent-context: x\n",
      "clusters: [{name: [a]}]\n",
      "clusters: [7]\n",
      "clusters: [{name: x, cluster: {server: {a: b}}}]\ncontexts: [{name: x, context: [1]}]\ncurrent-context: x\n",
      "current-context: [x]\n",
      "clusters: [{name: x, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: c, args: {a: "
      "b}}}}]\n"
      "contexts: [{name: x, context: {cluster: x, user: u}}]\ncurrent-context: x\n",
      "users: [{name: u, user: 5}]\nclusters: [{name: x, cluster: {server: 'https://h'}}]\n"
      "contexts: [{name: x, context: {cluster: x, user: u}}]\ncurrent-context: x\n",
  };
  int i = 0;
  for (const char* text : shapes) {
    CAPTURE(text);
    auto path = (dir / ("odd" + std::to_string(i++) + ".yaml")).string();
    test::write_file(path, text);
    try {
      kube::load_kubeconfig({path}, "");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(path) != std::string::npos);
    } catch (const std::exception& e) {
      FAIL("not a kubetrail::Error: " << e.what());
    }
  }
}

// A kubeconfig nested deeper than yaml-cpp's depth guard allows said
// "invalid YAML: bad file" (failed before: the message had no "deep").
TEST_CASE("kubeconfig: a file nested too deep says so, naming the file and line") {
  test::TempDir dir;
  auto path = (dir / "deep.yaml").string();
  test::write_file(
      path, "apiVersion: v1\nkind: Config\nclusters: " + std::string(100000, '[') + std::string(100000, ']') + "\n");
  CHECK_THROWS_WITH_AS(kube::load_kubeconfig({path}, ""),
                       doctest::Contains(("kubeconfig " + path + ":3: invalid YAML: nested too deep").c_str()), Error);
}

// Issue 15: every list page was gzipped by the server and inflated by
// kubetrail even on loopback (zlib was 7.9% of an initial sync's samples).
TEST_CASE("kubeconfig: responses are compressed only where the link is dearer than inflating") {
  kube::Connection c;
  c.server = "https://10.0.0.1:6443";
  CHECK(kube::choose_compression("auto", c));
  CHECK_FALSE(kube::choose_compression("none", c));
  for (const char* loopback : {"https://127.0.0.1:6443", "https://localhost:6443", "https://[::1]:6443",
                               "https://127.0.0.53", "http://localhost"}) {
    CAPTURE(loopback);
    c.server = loopback;
    CHECK_FALSE(kube::choose_compression("auto", c));
    CHECK(kube::choose_compression("gzip", c));
  }
  c.server = "https://127.example.com:443";  // a name, not the loopback net
  CHECK(kube::choose_compression("auto", c));
  c.server = "https://[fd00::1]:6443";
  CHECK(kube::choose_compression("auto", c));
  c.server = "https://10.96.0.1:443";
  c.in_cluster = true;
  CHECK_FALSE(kube::choose_compression("auto", c));
  CHECK(kube::choose_compression("gzip", c));
}

// One parser for the server URL (choose_compression and tls-server-name had
// each their own; the latter took "6443/prefix" for the port of a server
// behind a proxy path, and the inside of an IPv6 literal for host:port).
TEST_CASE("kubeconfig: a server URL's host, port and path prefix, IPv6 literals included") {
  auto check = [](std::string_view url, const char* host, const char* port, const char* prefix) {
    auto a = kube::parse_server_address(url);
    CAPTURE(url);
    CHECK(a.host == host);
    CHECK(a.port == port);
    CHECK(a.prefix == prefix);
  };
  check("https://10.0.0.1:6443", "10.0.0.1", "6443", "");
  check("https://[::1]:6443/", "::1", "6443", "");
  check("https://[fd00::10]", "fd00::10", "443", "");
  check("https://rancher.example.com/k8s/clusters/c-m-abc/", "rancher.example.com", "443", "/k8s/clusters/c-m-abc");
  check("https://api.example.com:8443/prefix", "api.example.com", "8443", "/prefix");
  check("http://localhost:8080", "localhost", "8080", "");
  check("http://localhost", "localhost", "80", "");
  CHECK(kube::parse_server_address("https://[fd00::10]:6443").url_host() == "[fd00::10]");
  CHECK(kube::parse_server_address("https://10.0.0.1:6443").url_host() == "10.0.0.1");
}
