// LeaderElector against a scripted Lease endpoint on 127.0.0.1 (the full
// algorithm runs against the test API server in tests/integration): here,
// that readers never wait for an API call the election loop is making.
#include <doctest/doctest.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ha/leader_election.hpp"
#include "kube/client.hpp"

using namespace kubetrail;
using namespace std::chrono_literals;

namespace {

// A Lease endpoint on 127.0.0.1 (its routes set on `http` first), served
// while the rig lives, and replica-a's elector talking to it. The server
// stops after the client is gone (members go in reverse): stopped while the
// client holds a keep-alive connection, it waits that connection's 5 s out.
struct LeaseRig {
  struct Serving {
    httplib::Server& http;
    std::thread thread;
    ~Serving() {
      http.stop();
      thread.join();
    }
  };
  httplib::Server& http;
  int port = http.bind_to_any_port("127.0.0.1");
  Serving serving{http, std::thread([this] { http.listen_after_bind(); })};
  kube::Client client{[this] {
    for (int i = 0; i < 500 && !http.is_running(); ++i) std::this_thread::sleep_for(10ms);
    kube::Connection connection;
    connection.server = "http://127.0.0.1:" + std::to_string(port);
    return connection;
  }()};
  ha::LeaderElector elector{client, [] {
                              ha::LeaseSettings settings;
                              settings.identity = "replica-a";
                              return settings;
                            }()};
};

}  // namespace

TEST_CASE("leader election: leading() answers while a renewal is waiting for the API server") {
  httplib::Server http;
  std::mutex mu;
  std::condition_variable cv;
  bool put_arrived = false, release_put = false;
  std::string lease;  // the stored Lease, as the server last answered it
  const std::string path = "/apis/coordination.k8s.io/v1/namespaces/kubetrail/leases/kubetrail";
  http.Get(path, [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(mu);
    if (lease.empty()) {
      res.status = 404;
      res.set_content(R"({"kind":"Status","code":404})", "application/json");
    } else {
      res.set_content(lease, "application/json");
    }
  });
  auto store = [&](const httplib::Request& req, httplib::Response& res, int status) {
    std::lock_guard lock(mu);
    lease = req.body;  // the elector reads back what it wrote (resourceVersion aside)
    res.status = status;
    res.set_content(lease, "application/json");
  };
  http.Post("/apis/coordination.k8s.io/v1/namespaces/kubetrail/leases",
            [&](const httplib::Request& req, httplib::Response& res) { store(req, res, 201); });
  http.Put(path, [&](const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    put_arrived = true;
    cv.notify_all();
    cv.wait_for(lock, 10s, [&] { return release_put; });  // bounded: the test releases it
    lock.unlock();
    store(req, res, 200);
  });
  {
    LeaseRig rig{http};
    ha::LeaderElector& elector = rig.elector;

    REQUIRE(elector.step());  // no Lease: created, leading
    CHECK(elector.leading());
    auto renewal = std::async(std::launch::async, [&] { return elector.step(); });  // GET, then a PUT that hangs
    {
      std::unique_lock lock(mu);
      REQUIRE(cv.wait_for(lock, 10s, [&] { return put_arrived; }));
    }
    // The renewal is inside its PUT now. Readers must not wait for it.
    auto reader = std::async(std::launch::async, [&] { return elector.leading() && elector.holder() == "replica-a"; });
    bool answered = reader.wait_for(5s) == std::future_status::ready;
    {
      std::lock_guard lock(mu);
      release_put = true;
    }
    cv.notify_all();
    CHECK(answered);
    CHECK(reader.get());
    CHECK(renewal.get());
    CHECK(elector.leading());
  }
}

// A Lease is bytes from the API server, and its progress annotation is
// written by whoever can write the Lease. The first Lease here, 100,000
// nested brackets in its spec, killed the process before the depth check
// (SIGSEGV: nlohmann copies and dumps recursively); the second nests as
// deep inside the annotation's own JSON. Now each is an unreadable Lease
// (a warning), and the elector does not lead on it.
TEST_CASE("leader election: a Lease nested 100,000 deep is unreadable, not a crash") {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& lease :
       {R"({"metadata":{"name":"kubetrail","resourceVersion":"7"},"spec":{"holderIdentity":"other","x":)" + deep + "}}",
        R"({"metadata":{"name":"kubetrail","resourceVersion":"7","annotations":{"kubetrail.io/delivered-through":")" +
            deep + R"("}},"spec":{"holderIdentity":"other","leaseDurationSeconds":15}})"}) {
    httplib::Server http;
    http.Get("/apis/coordination.k8s.io/v1/namespaces/kubetrail/leases/kubetrail",
             [&](const httplib::Request&, httplib::Response& res) { res.set_content(lease, "application/json"); });
    LeaseRig rig{http};
    CHECK(!rig.elector.step());
    CHECK(!rig.elector.leading());
  }
}

// When each handler's last inventory snapshot was taken travels in the
// Lease (kAnnotationSnapshots), so that a replica that takes over does not
// send again at once the snapshot the last leader sent. Read from another
// holder's Lease, kept through a takeover, and moved on by snapshot_taken().
// Written anew with the Lease: it failed before the annotation existed (no
// times observed, none written).
TEST_CASE("leader election: the last leader's snapshot times are read, kept through a takeover, and moved on") {
  httplib::Server http;
  std::mutex mu;
  std::string lease =
      R"({"metadata":{"name":"kubetrail","resourceVersion":"7","annotations":{"kubetrail.io/snapshots-taken":)"
      R"("{\"cmdb\":1700000000,\"words\":\"soon\",\"negative\":-5,\"half\":1.5}"}},)"
      R"("spec":{"holderIdentity":"other","leaseDurationSeconds":15}})";
  std::vector<std::string> written;
  const std::string path = "/apis/coordination.k8s.io/v1/namespaces/kubetrail/leases/kubetrail";
  http.Get(path, [&](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(mu);
    res.set_content(lease, "application/json");
  });
  http.Put(path, [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    written.push_back(req.body);
    lease = req.body;
    res.set_content(lease, "application/json");
  });
  auto written_times = [&](size_t i) {
    std::lock_guard lock(mu);
    REQUIRE(written.size() > i);
    auto doc = nlohmann::json::parse(written[i]);
    return nlohmann::json::parse(doc["metadata"]["annotations"][ha::kAnnotationSnapshots].get<std::string>());
  };
  LeaseRig rig{http};
  ha::LeaderElector& elector = rig.elector;

  CHECK_FALSE(elector.step());  // another replica holds it
  CHECK(elector.observed_snapshots() == ha::LeaderElector::SnapshotTimes{{"cmdb", 1700000000}});  // the rest: not times

  {  // the holder released it (no holder): this replica takes it, and goes on publishing the times
    std::lock_guard lock(mu);
    lease = R"({"metadata":{"name":"kubetrail","resourceVersion":"8","annotations":{"kubetrail.io/snapshots-taken":)"
            R"("{\"cmdb\":1700000000}"}},"spec":{"holderIdentity":"","leaseDurationSeconds":1}})";
  }
  REQUIRE(elector.step());
  CHECK(written_times(0) == nlohmann::json{{"cmdb", 1700000000}});

  elector.snapshot_taken("cmdb", 1700003600);
  elector.snapshot_taken("audit", 1700000100);
  elector.snapshot_taken("cmdb", 1600000000);  // older: ignored
  REQUIRE(elector.step());
  CHECK(written_times(1) == nlohmann::json{{"audit", 1700000100}, {"cmdb", 1700003600}});
  // Unless the time kept was refused (far ahead of the schedule's clock):
  // the snapshot taken replaces it.
  elector.snapshot_taken("audit", 1600000000, true);
  REQUIRE(elector.step());
  CHECK(written_times(2) == nlohmann::json{{"audit", 1600000000}, {"cmdb", 1700003600}});
}

// The annotation is written by anyone who may write the Lease, and only
// advises: an unreadable one is left out, and the Lease is read as ever
// (the holder, the delivery progress).
TEST_CASE("leader election: an unreadable snapshot-times annotation is left out, not the Lease") {
  for (const std::string& value : {std::string(R"(not json)"), std::string(R"([1,2])"), std::string(R"(5)"),
                                   std::string(5000, '[') + std::string(5000, ']')}) {
    CAPTURE(value.substr(0, 20));
    nlohmann::json doc = {
        {"metadata",
         {{"name", "kubetrail"},
          {"resourceVersion", "7"},
          {"annotations", {{ha::kAnnotationSnapshots, value}, {ha::kAnnotationProgress, R"({"pods":"42"})"}}}}},
        {"spec", {{"holderIdentity", "other"}, {"leaseDurationSeconds", 15}}}};
    const std::string lease = doc.dump();
    httplib::Server http;
    http.Get("/apis/coordination.k8s.io/v1/namespaces/kubetrail/leases/kubetrail",
             [&](const httplib::Request&, httplib::Response& res) { res.set_content(lease, "application/json"); });
    LeaseRig rig{http};
    CHECK_FALSE(rig.elector.step());
    CHECK(rig.elector.holder() == "other");
    CHECK(rig.elector.observed_progress() == ha::LeaderElector::Progress{{"pods", "42"}});
    CHECK(rig.elector.observed_snapshots().empty());
  }
}
