// The outbox file (state/outbox_log.hpp): rows, marks and how far the
// journal is routed survive reopening; a torn last frame loses only what
// nobody was told; rewrites keep what is live; a file that is not an
// outbox is refused by name.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "helpers.hpp"
#include "state/log_file.hpp"
#include "state/outbox_log.hpp"

using namespace kubetrail;
using state::OutboxLog;

namespace {
constexpr uint64_t kStore = 77;

std::vector<int64_t> add(OutboxLog& log, const std::vector<OutboxLog::Row>& rows) {
  int64_t settled = 0;
  return log.write(rows, {}, {}, 0, settled);
}
int64_t deliver(OutboxLog& log, std::vector<int64_t> seqs) {
  int64_t settled = 0;
  log.write({}, seqs, {}, 0, settled);
  return settled;
}
std::vector<std::string> pending_ids(const OutboxLog& log, const std::string& handler) {
  std::vector<std::string> out;
  for (const auto& e : log.pending(handler, 0, 1000)) out.push_back(e.id);
  return out;
}
}  // namespace

TEST_CASE("outbox log: rows, marks and routed-through read back after reopening, each (id, handler) once") {
  test::TempDir dir;
  auto path = (dir / "s.db-outbox").string();
  {
    auto log = OutboxLog::open(path, kStore);
    auto seqs = add(*log, {{"c/u/1", "h", "r", 0, R"({"n":1})"},
                           {"c/u/2", "h", "r", 0, R"({"n":2})"},
                           {"c/u/3", "h", "r", 0, R"({"n":3})"},
                           {"c/u/1", "g", "r2", 1, R"({"n":1})"},
                           {"c/u/1", "h", "r", 0, R"({"n":1})"}});  // twice in one batch: once
    REQUIRE(seqs.size() == 5);
    CHECK(seqs[4] == 0);
    CHECK(log->pending_count() == 4);
    int64_t settled = 0;
    log->write({}, {seqs[0]}, {{seqs[1], "gave up"}}, 5, settled);
    CHECK(settled == 2);
    log->write({}, {seqs[0]}, {}, 0, settled);  // delivered already: nothing settles twice
    CHECK(settled == 0);
    CHECK(add(*log, {{"c/u/1", "h", "r", 0, "{}"}}).front() == 0);  // delivered: known
  }
  auto log = OutboxLog::open(path, kStore);
  CHECK(log->pending_count() == 2);
  CHECK(log->routed_through() == 5);
  CHECK(pending_ids(*log, "h") == std::vector<std::string>{"c/u/3"});
  auto g = log->pending("g", 0, 10);
  REQUIRE(g.size() == 1);
  CHECK(g[0].id == "c/u/1");
  CHECK(g[0].route == "r2");
  CHECK(g[0].position == 1);
  CHECK(g[0].json == R"({"n":1})");
  auto dead = log->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].id == "c/u/2");
  CHECK(dead[0].reason == "gave up");
  // Known in every state: delivered, dead, pending.
  auto again = add(*log, {{"c/u/1", "h", "r", 0, "{}"}, {"c/u/2", "h", "r", 0, "{}"}, {"c/u/3", "h", "r", 0, "{}"}});
  CHECK(again == std::vector<int64_t>{0, 0, 0});
  // New rows follow the old seqs (workers page through a handler's rows by seq).
  CHECK(add(*log, {{"c/u/4", "h", "r", 0, "{}"}}).front() > g[0].seq);
}

// A crash tears the last write: the frame is cut off at the next open, and
// what it said is as if never said - here a delivered mark, so the row is
// pending again (delivered again, same id: the window README names). What
// was before it stays, and the next write follows the last whole frame.
TEST_CASE("outbox log: a torn last frame is cut off, what it marked is pending again, nothing before it is lost") {
  test::TempDir dir;
  auto path = (dir / "s.db-outbox").string();
  int64_t seq = 0;
  size_t whole = 0;
  {
    auto log = OutboxLog::open(path, kStore);
    seq = add(*log, {{"c/u/1", "h", "r", 0, R"({"n":1})"}}).front();
    whole = log->file_bytes();
    CHECK(deliver(*log, {seq}) == 1);
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  test::LogCapture logged;
  {
    auto log = OutboxLog::open(path, kStore);
    CHECK(logged.text().find("dropped from there on") != std::string::npos);
    CHECK(log->file_bytes() == whole);
    CHECK(pending_ids(*log, "h") == std::vector<std::string>{"c/u/1"});
    CHECK(deliver(*log, {seq}) == 1);
  }
  auto log = OutboxLog::open(path, kStore);
  CHECK(log->pending_count() == 0);
  CHECK(add(*log, {{"c/u/1", "h", "r", 0, "{}"}}).front() == 0);
}

// Delivered rows' JSON is garbage: past the threshold (and what is live) the
// file is rewritten with pending rows whole, dead letters with their
// reasons and delivered rows as ids - still refused a second time.
TEST_CASE("outbox log: a rewrite drops delivered rows' JSON and keeps everything that is live") {
  test::TempDir dir;
  auto path = (dir / "s.db-outbox").string();
  const std::string big(1000, 'x');
  std::vector<int64_t> seqs;
  {
    auto log = OutboxLog::open(path, kStore, 8192);
    for (int i = 0; i < 100; ++i) {
      std::string id = "c/u/" + std::to_string(i), json = R"({"i":)" + std::to_string(i) + ",\"p\":\"" + big + "\"}";
      seqs.push_back(add(*log, {{id, "h", "r", 0, json}}).front());
    }
    int64_t settled = 0;
    log->write({}, {}, {{seqs[0], "no"}}, 9, settled);
    for (size_t i = 1; i < 90; ++i) deliver(*log, {seqs[i]});
    // 100 rows of ~1 KB were written (~108 KB without a rewrite); 11 of them
    // are live with their JSON (~12 KB) and 89 as ids: the file is rewritten
    // whenever its garbage passes what is live, so it stays under twice that.
    CHECK(log->file_bytes() < 40000);
    CHECK(log->pending_count() == 10);
  }
  auto log = OutboxLog::open(path, kStore, 8192);
  auto pending = log->pending("h", 0, 100);
  REQUIRE(pending.size() == 10);
  for (size_t i = 0; i < pending.size(); ++i) {
    CHECK(pending[i].seq == seqs[90 + i]);
    CHECK(pending[i].json == R"({"i":)" + std::to_string(90 + i) + ",\"p\":\"" + big + "\"}");
  }
  REQUIRE(log->dead_letters().size() == 1);
  CHECK(log->dead_letters()[0].reason == "no");
  CHECK(log->routed_through() == 9);
  CHECK(add(*log, {{"c/u/5", "h", "r", 0, "{}"}}).front() == 0);
  CHECK(add(*log, {{"c/u/100", "h", "r", 0, "{}"}}).front() > seqs.back());
}

// kubetrail dead-letters (issue 17): an operator hands a dead letter back
// or gives it up. Before this, a dead letter could only wait for retention.
TEST_CASE("outbox log: a redelivered dead letter is pending again after every seq, a dropped one stays known") {
  test::TempDir dir;
  auto path = (dir / "s.db-outbox").string();
  int64_t again = 0;
  {
    auto log = OutboxLog::open(path, kStore);
    auto seqs = add(*log, {{"c/u/1", "h", "r", 2, R"({"n":1})"},
                           {"c/u/2", "h", "r", 0, R"({"n":2})"},
                           {"c/u/3", "h", "r", 0, R"({"n":3})"}});
    int64_t settled = 0;
    log->write({}, {}, {{seqs[0], "receiver down"}, {seqs[1], "rejected"}}, 0, settled);
    deliver(*log, {seqs[2]});
    REQUIRE(log->dead_letters().size() == 2);
    CHECK(log->dead_letters()[0].seq == seqs[0]);
    CHECK(log->json_of(seqs[0]) == R"({"n":1})");
    CHECK(log->json_of(seqs[2]).empty());  // delivered: its JSON is not kept
    CHECK(log->redeliver(seqs[2]) == 0);   // not a dead letter
    CHECK(!log->drop(seqs[2]));
    again = log->redeliver(seqs[0]);
    CHECK(again > seqs[2]);  // a worker that paged past the old seq finds it
    CHECK(log->redeliver(seqs[0]) == 0);
    CHECK(log->drop(seqs[1]));
    CHECK(!log->drop(seqs[1]));
    CHECK(log->dead_letters().empty());
    CHECK(log->pending_count() == 1);
    auto p = log->pending("h", seqs[2], 10);
    REQUIRE(p.size() == 1);
    CHECK(p[0].seq == again);
    CHECK(p[0].id == "c/u/1");
    CHECK(p[0].route == "r");
    CHECK(p[0].position == 2);
    CHECK(p[0].json == R"({"n":1})");
    // Known still: neither comes in again as a new row.
    CHECK(add(*log, {{"c/u/1", "h", "r", 0, "{}"}, {"c/u/2", "h", "r", 0, "{}"}}) == std::vector<int64_t>{0, 0});
  }
  for (int pass = 0; pass < 2; ++pass) {  // as read back, then as rewritten
    auto log = OutboxLog::open(path, kStore);
    CHECK(log->dead_letters().empty());
    auto p = log->pending("h", 0, 10);
    REQUIRE(p.size() == 1);
    CHECK(p[0].seq == again);
    CHECK(p[0].json == R"({"n":1})");
    CHECK(add(*log, {{"c/u/1", "h", "r", 0, "{}"}, {"c/u/2", "h", "r", 0, "{}"}}) == std::vector<int64_t>{0, 0});
    if (pass == 0) log->compact(86400, uint64_t{1} << 30, 0);
  }
}

TEST_CASE("outbox log: a file that is not this store's outbox is refused, naming it") {
  test::TempDir dir;
  auto path = (dir / "s.db-outbox").string();
  OutboxLog::open(path, kStore).reset();
  try {
    OutboxLog::open(path, kStore + 1);
    FAIL("opened");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("another state store") != std::string::npos);
  }
  // A checkpoint log's entries in it (another file copied over it).
  {
    auto file = state::LogFile::open(path, kStore);
    std::string payload;
    state::LogFile::encode(payload, {state::LogKind::kObject, 1, "cm", "ns/a", "u", "1", "{}"});
    file.append(payload);
  }
  try {
    OutboxLog::open(path, kStore);
    FAIL("opened");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("not an outbox file") != std::string::npos);
  }
}
