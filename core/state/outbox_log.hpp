// The durable outbox: per handler, the change sets it owes (pending), has
// had (delivered: only the id is kept, so that it never gets it twice) or
// gave up on (dead letters, with why). One append-only file of checksummed
// frames beside the SQLite file (PATH-outbox, the log's frame format:
// state/log_file.hpp), not a SQLite table: delivery writes the outbox on
// every handler call, and a SQLite commit per call - rows rewritten in a
// B-tree, their WAL pages written twice - cost more than everything else
// the state store adds per event (docs/PERFORMANCE.md, issue 12). Here a
// batch's new rows are one frame, what one handler call settled is one
// frame: one pwritev each, durable against kill -9 as SQLite's
// synchronous=NORMAL commits were (the page cache has them).
//
// A frame is written whole or not at all; reading stops at a torn one, and
// the file is cut back there (a write cut short by a crash was never
// acknowledged to anyone: what it held is still owed upstream - in the
// journal, or by the handler before in the chain).
//
// What the file holds is also held in memory, indexed: pending rows by
// handler and seq, every row's (id, handler) by hash, so that an id offered
// twice is refused without reading the disk. A delivered row costs about
// 150 bytes of memory (a map node and a hash entry; its JSON is not kept), a
// pending or dead one its strings too;
// the JSON is read from the file when a row is handed to a worker.
// Delivered rows' JSON is garbage in the file: once the garbage exceeds
// kRewriteBytes and what is live, the file is rewritten with only what is
// live (pending and dead rows with their JSON, delivered ones as ids).
//
// Not thread-safe: the state store calls it under its lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "state/log_file.hpp"

namespace kubetrail::state {

class OutboxLog {
 public:
  // A row to add: handler owes change set `id` (the `position`-th handler
  // of `route`'s chain).
  struct Row {
    std::string_view id, handler, route;
    int position = 0;
    std::string_view json;
  };
  // A pending row, as handed to a delivery worker.
  struct Entry {
    int64_t seq = 0;
    std::string id, handler, route;
    int position = 0;
    std::string json;
  };
  struct DeadLetter {
    int64_t seq = 0;
    std::string id, handler, reason;
    int64_t created = 0;  // unix seconds the row was written
  };
  struct Compaction {
    size_t removed_by_age = 0, delivered_removed_by_size = 0, dead_removed_by_size = 0;
    uint64_t bytes = 0;  // what the outbox holds afterwards
  };
  // The file is rewritten once its garbage is this large and larger than
  // what is live (tests make it small).
  static constexpr size_t kRewriteBytes = size_t{64} << 20;

  // Opens the outbox at `path` (creating it for store `id`) and reads it. A
  // torn last frame is cut off (logged); a file of another store, or one
  // holding what kubetrail never writes there, is a kubetrail::Error naming
  // it and the byte.
  static std::unique_ptr<OutboxLog> open(const std::string& path, uint64_t id, size_t rewrite_bytes = kRewriteBytes);

  // One frame, written whole or (with a kubetrail::Error) not at all: rows
  // added (each one's seq, or 0 where (id, handler) is known already - in
  // the outbox or earlier in `rows`), rows delivered, rows dead with why,
  // and, when routed_through > 0, how far the journal is routed. `settled`:
  // how many of delivered and dead were pending (the others are ignored).
  std::vector<int64_t> write(const std::vector<Row>& rows, const std::vector<int64_t>& delivered,
                             const std::vector<std::pair<int64_t, std::string>>& dead, int64_t routed_through,
                             int64_t& settled);

  // Pending rows of `handler` after seq `after`, oldest first. A row whose
  // JSON cannot be read back (logged) comes with it empty.
  std::vector<Entry> pending(const std::string& handler, int64_t after, size_t limit) const;
  std::vector<DeadLetter> dead_letters() const;
  // Whether the outbox holds a row for (id, handler): pending, delivered
  // (until retention forgets it) or dead.
  bool holds(std::string_view id, std::string_view handler) const;
  // A pending or dead row's change set JSON ("" for any other seq, or when
  // it cannot be read back).
  std::string json_of(int64_t seq) const;
  // Hands dead letter `seq` back to its handler, in one frame: the dead row
  // is forgotten and a pending row with a new seq (after every other, so a
  // worker paging by seq finds it) owes its id again. Returns the new seq,
  // 0 when `seq` is not a dead letter.
  int64_t redeliver(int64_t seq);
  // Gives dead letter `seq` up: it is kept as a delivered row (its id still
  // guarded, never handed on). False when `seq` is not a dead letter.
  bool drop(int64_t seq);
  // Retention (see StateStore::outbox_compact), then the file rewritten.
  Compaction compact(int64_t max_age_s, uint64_t max_bytes, int64_t now);

  int64_t pending_count() const noexcept { return pending_count_; }
  int64_t routed_through() const noexcept { return routed_through_; }
  size_t file_bytes() const noexcept { return file_.size(); }
  const std::string& path() const noexcept { return file_.path(); }

  // Fault injection for tests: write() refuses (throws, writing nothing) a
  // frame adding a row for which `refuse(id, handler)` is true, as a disk
  // that fails mid-write would.
  void refuse_rows_for_test(std::function<bool(std::string_view, std::string_view)> refuse) {
    refuse_ = std::move(refuse);
  }

  // For the schema 4 -> 5 conversion: replaces the file with these rows
  // (state: 0 pending, 1 delivered, 2 dead; reason for dead ones) and
  // `routed_through`.
  struct Imported {
    int64_t seq = 0;
    std::string id, handler, route;
    int position = 0;
    std::string json;
    int state = 0;
    std::string reason;
    int64_t created = 0;
  };
  void replace_with(const std::vector<Imported>& rows, int64_t routed_through);

 private:
  enum class State : uint8_t { pending, delivered, dead };
  // One row. Pending and dead rows keep their strings; a delivered row only
  // where its id is in the file, for the rare hash hit.
  struct Slot {
    State state = State::pending;
    uint16_t handler = 0;  // index in handlers_
    int32_t position = 0;
    int64_t created = 0;
    uint64_t hash = 0;  // of id and handler
    size_t id_at = 0;   // the id's bytes in the file
    uint32_t id_size = 0;
    uint32_t bytes = 0;  // what the row holds in a rewritten file (without JSON once delivered)
    size_t json_at = 0;  // pending and dead: the JSON's bytes in the file
    uint32_t json_size = 0;
    std::unique_ptr<std::string> route, reason;  // pending and dead only
  };

  explicit OutboxLog(LogFile file, size_t rewrite_bytes) : file_(std::move(file)), rewrite_bytes_(rewrite_bytes) {}
  void load();
  uint16_t handler_index(std::string_view handler);
  // The seq of the row for (id, handler), or 0.
  int64_t find(std::string_view id, uint16_t handler, uint64_t hash) const;
  std::string id_of(const Slot& s) const;
  void settle(int64_t seq, State to, std::string reason);
  // Removes a row from memory (its id no longer known); the next row.
  std::map<int64_t, Slot>::iterator forget(std::map<int64_t, Slot>::iterator it);
  void rewrite();
  // One row handed to replace_file(): seq, handler, id, route, created,
  // json, position, delivered, and the reason of a dead one (else null).
  using EncodeRow = std::function<void(int64_t, std::string_view, std::string_view, std::string_view, int64_t,
                                       std::string_view, int, bool, const std::string*)>;
  void replace_file(int64_t routed_through, const std::function<void(const EncodeRow&)>& each);
  static uint64_t hash_of(std::string_view id, std::string_view handler);
  static uint32_t row_bytes(size_t id, size_t handler, size_t route, size_t json, size_t reason);

  LogFile file_;
  const size_t rewrite_bytes_;
  std::map<int64_t, Slot> rows_;                      // every row, by seq
  std::unordered_multimap<uint64_t, int64_t> known_;  // hash of (id, handler) -> seq
  std::vector<std::string> handlers_;                 // handler names, interned
  std::unordered_map<std::string, uint16_t> handler_of_;
  std::vector<std::set<int64_t>> pending_of_;  // per handler index: its pending rows' seqs
  int64_t next_seq_ = 1, pending_count_ = 0, routed_through_ = 0;
  uint64_t live_bytes_ = 0;  // sum of rows' bytes
  std::string payload_;      // the frame write() builds (kept: no allocation per write)
  std::function<bool(std::string_view, std::string_view)> refuse_;
};

}  // namespace kubetrail::state
