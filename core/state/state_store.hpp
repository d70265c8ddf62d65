// The state store: what kubetrail remembers across restarts, in one SQLite
// file (WAL mode) and two files beside it, both of checksummed frames
// (state/log_file.hpp):
//  - checkpoints: per resource, the last resourceVersion and every object's
//    pruned content as last seen, so that at start-up the fresh list can be
//    compared with what was there when kubetrail stopped and the real
//    difference reported once (catch-up). Saves append to the log
//    (PATH-log); a fold merges the log into the snapshot (PATH-objects:
//    every object's last state, sorted by resource and key), written whole
//    beside the old one and renamed over it;
//  - the journal: change sets the watches produced that delivery has not yet
//    routed into the outbox (in the log, with the checkpoint entries they
//    cover);
//  - the outbox: per handler, change sets owed, delivered or dead (a third
//    file of frames, PATH-outbox: state/outbox_log.hpp).
// SQLite keeps what is small and rarely written: meta and the compression
// dictionaries.
//
// The invariant that makes "nothing lost, nothing twice" hold across kill -9
// (docs/ARCHITECTURE.md): a checkpoint never covers a change whose change set
// is not durably stored. save() writes the checkpoint entries and the change
// sets they cover in one frame of the log (one write), and nothing is
// handed to delivery before that write; delivery writes the outbox rows of a
// journal entry before it forgets the entry.
//
// Thread-safe: one connection behind a mutex (writes are batched by the
// callers, so the lock is taken rarely).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/dictionary_codec.hpp"
#include "model/object_store.hpp"
#include "state/log_file.hpp"
#include "state/outbox_log.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace kubetrail::state {

class StateStore {
 public:
  // Opens (creating if needed) the store at `path`. A file that is not a
  // kubetrail state store, or is corrupt, is a kubetrail::Error naming it;
  // with reset = true such a file is moved aside (PATH.corrupt-<time>) and a
  // fresh store started.
  static std::unique_ptr<StateStore> open(const std::string& path, bool reset);
  // The log is folded into the snapshot once it holds this many object
  // entries and as many as the snapshot, or kFoldBytes and as many bytes;
  // when it is that large mostly with change sets already routed, it is
  // rewritten alone instead (see state_store.cpp; tests make both small).
  static constexpr int64_t kFoldRows = 20000;
  static constexpr size_t kFoldBytes = size_t{64} << 20;
  // The most the state store's files may take on disk, beside what the
  // caps bound (the history's and the outbox's): the log up to kFoldBytes
  // and, during a fold, the log and snapshot written again beside
  // themselves; the snapshot (objects compressed: ~40 MiB at 100k pods)
  // and SQLite's small tables. A volume smaller than
  // disk_budget(...) fills before retention applies.
  static constexpr uint64_t kUncappedBytes = uint64_t{384} << 20;
  static constexpr uint64_t disk_budget(uint64_t history_max_bytes, uint64_t outbox_max_bytes) noexcept {
    return history_max_bytes + outbox_max_bytes + kUncappedBytes;
  }
  static std::unique_ptr<StateStore> open(const std::string& path, bool reset, int64_t fold_rows,
                                          size_t fold_bytes = kFoldBytes);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  struct Checkpoint {
    std::string resource_version;                        // of the last list/watch position saved
    std::map<std::string, model::StoredObject> objects;  // by namespace/name
    // Rows that could not be read back (a damaged or tampered file), with
    // why: left out of `objects`, so the object counts as unknown (a catch-up
    // reports it rather than a change being lost).
    std::vector<std::pair<std::string, std::string>> unreadable;
  };
  // The checkpoint of a resource (its qualified name, e.g. deployments.apps),
  // or nullopt when this resource was never checkpointed (first run).
  std::optional<Checkpoint> load(const std::string& resource);
  // The keys of the objects the store holds for a resource (what load()
  // would return, undecodable rows included, without reading the objects):
  // a prune after a relist deletes those the cache no longer has.
  std::vector<std::string> keys(const std::string& resource);

  // A change set as the journal holds it: its id and its schema v1 JSON.
  struct JournalEntry {
    int64_t seq = 0;
    std::string id, json;
    std::string error{};  // from journal_pending(): why `json` could not be read back ("" when it could)
    // For save(), instead of `json`: a view of JSON that outlives the call
    // (the change set's rendering, ChangeSet::rendered), so that the
    // checkpoint does not copy each change set's ~17 KB once more.
    std::string_view rendering{};
    std::string_view text() const noexcept { return json.empty() ? rendering : std::string_view(json); }
  };
  // Saves changes of one resource in one transaction: objects to upsert,
  // keys to delete, the resourceVersion reached, and the change sets these
  // changes amount to (into the journal; an id already there is kept once).
  // Either all of it is durable or none of it. An empty resource_version
  // leaves the one stored as it is (one page less to write per commit: the
  // informer writes it at the end of lists and watches, and once a second).
  // `cache`: the store that holds the upserted objects, which reads their
  // text (it may keep them compressed); without it, their json is the text.
  // The dictionary `resource`'s objects are compressed with, for its
  // informer's cache to pack with (ObjectStore::pack_with): a save then
  // writes the cache's frames as they are. Its fingerprint
  // (DictionaryCodec::fingerprint; 0: none yet) and its content.
  uint64_t dictionary_fingerprint(std::string_view resource);
  std::optional<std::string> dictionary_content(std::string_view resource);
  // Objects save() has written as their cache's frame (tests, benchmarks).
  uint64_t frames_shared() {
    std::lock_guard lock(mu_);
    return frames_shared_;
  }
  void save(const std::string& resource, const std::vector<std::pair<std::string, const model::StoredObject*>>& upserts,
            const std::vector<std::string>& deletes, const std::string& resource_version,
            const std::vector<JournalEntry>& journal = {}, const model::ObjectStore* cache = nullptr);
  // Journal entries not yet routed, oldest first (after a crash: what the
  // last run had checkpointed but not yet written to the outbox).
  std::vector<JournalEntry> journal_pending();
  // Delivery has written the entries' outbox rows (or decided they go
  // nowhere): the journal forgets them. One row records how far it is
  // routed (every entry below the oldest still waiting); an entry routed out
  // of order above that is routed again after a crash, which the outbox
  // drops as a known id.
  void journal_done(const std::vector<std::string>& ids);
  size_t journal_size();

  // --- the durable outbox: change sets waiting for a handler ---------------
  using OutboxEntry = OutboxLog::Entry;
  using OutboxRow = OutboxLog::Row;
  using DeadLetter = OutboxLog::DeadLetter;
  using Compaction = OutboxLog::Compaction;
  // Records that `handler` owes this change set. Returns its sequence
  // number, or 0 when (id, handler) is already known - pending, delivered or
  // dead - so that no handler ever receives an id twice.
  int64_t outbox_add(const std::string& id, const std::string& handler, const std::string& route, int position,
                     std::string_view json);
  // outbox_add() for many rows in one write (delivery writes a batch of
  // change sets' rows at once). All of them are written or, with a
  // kubetrail::Error, none. Each row's seq, or 0 where (id, handler) is
  // already known - in the outbox or earlier in `rows`.
  // `routed`: the change sets these rows route (and any the caller routes
  // nowhere), retired from the journal in the same write, as journal_done()
  // would in a second one.
  std::vector<int64_t> outbox_add_many(const std::vector<OutboxRow>& rows, const std::vector<std::string>& routed = {});
  // What one handler call settled, in one write: rows delivered, rows
  // dead-lettered (with why), and the rows the next handlers of their
  // chains now owe (as outbox_add_many, whose seqs it returns). All of it
  // is written or, with a kubetrail::Error, none.
  std::vector<int64_t> outbox_settle(const std::vector<int64_t>& delivered,
                                     const std::vector<std::pair<int64_t, std::string>>& dead,
                                     const std::vector<OutboxRow>& next);
  void outbox_delivered(int64_t seq);
  void outbox_dead(int64_t seq, const std::string& reason);
  // Pending entries of a handler, oldest first, after sequence `after`.
  std::vector<OutboxEntry> outbox_pending(const std::string& handler, int64_t after, size_t limit);
  // Whether `handler` owes or has had change set `id` (outbox_add() would
  // return 0 for it): a delivered row is remembered until retention
  // (outbox_compact) forgets it.
  bool outbox_holds(const std::string& id, const std::string& handler);
  // Pending outbox rows, exact at every call (kept in step with every write,
  // not a count of submissions).
  size_t outbox_backlog() const noexcept { return static_cast<size_t>(pending_.load()); }
  // Dead letters, oldest first.
  std::vector<DeadLetter> dead_letters();
  // A dead letter's change set JSON ("" when `seq` is none).
  std::string dead_letter_json(int64_t seq);
  // An operator's repair (kubetrail dead-letters): hands dead letter `seq`
  // back to its handler as a new pending row (its seq, 0 when `seq` is not
  // a dead letter), or gives it up for good (false when it is none).
  int64_t redeliver_dead_letter(int64_t seq);
  bool drop_dead_letter(int64_t seq);
  // Bounded retention: forgets delivered entries and dead letters older than
  // max_age_s, then, while the outbox holds more than max_bytes, the oldest
  // delivered entries and then the oldest dead letters. Pending entries are
  // never dropped (that would lose changes): when they alone exceed the cap
  // the result says so and the backlog metric shows it. Then rewrites the
  // outbox file. A forgotten delivered entry no longer guards its id against a
  // second delivery, hence the age: keep it longer than any restart gap.
  Compaction outbox_compact(int64_t max_age_s, uint64_t max_bytes);

  // This installation's redaction key (see diff::redacted_marker): drawn at
  // random the first time and kept, so that markers stay the same across
  // restarts (the checkpoint holds them). Never logged.
  std::string redaction_key();

  // Small values kept across restarts under a name (inventory mode: when
  // each handler's last snapshot was taken, "inventory/HANDLER"). Names
  // are the caller's; nullopt when unset. Throws kubetrail::Error when the
  // store cannot be written.
  std::optional<std::string> setting(const std::string& name);
  void set_setting(const std::string& name, const std::string& value);
  // The names set (to a non-empty value) that begin with `prefix`, sorted.
  std::vector<std::string> setting_names(const std::string& prefix);

  // Fault injection for tests: outbox writes adding a row for which
  // `refuse(id, handler)` is true fail as a failing disk would (nothing of
  // that write happens).
  void refuse_outbox_rows_for_test(std::function<bool(std::string_view id, std::string_view handler)> refuse);

  const std::string& path() const noexcept { return path_; }
  // Folds since open (state_bench prints it: a cost measured over a window
  // without one would leave the fold out).
  int64_t folds() const noexcept { return folds_.load(); }
  // Rewrites of the log alone since open (see rewrite_log()).
  int64_t log_rewrites() const noexcept { return log_rewrites_.load(); }

 private:
  StateStore(sqlite3* db, std::string path, int64_t fold_rows, size_t fold_bytes);
  const int64_t fold_rows_;
  const size_t fold_bytes_;
  void exec(const char* sql);
  // Runs `body` in one write transaction (BEGIN IMMEDIATE ... COMMIT), rolled
  // back when it throws. Caller holds mu_.
  template <class F>
  void transaction(F&& body);
  std::atomic<int64_t> pending_{0};             // outbox rows in state 'pending'
  std::set<std::string, std::less<>> known_;    // resources with a resourceVersion saved (under mu_)
  std::map<const char*, sqlite3_stmt*> cache_;  // prepared hot statements by their SQL literal (under mu_)
  // Compressed checkpoint rows (under mu_): the codec and which dictionary
  // is each resource's, made from the first objects a fold or a list page
  // brings for it; `made_` are those made in the open transaction
  // (forgotten again when it rolls back).
  DictionaryCodec codec_;
  std::map<std::string, int64_t, std::less<>> dictionary_of_;
  std::map<int64_t, uint64_t> fingerprint_of_;               // DictionaryCodec::fingerprint() by dictionary id
  std::set<std::string, std::less<>> refused_dictionaries_;  // resources whose dictionary in the file does not load
  std::vector<int64_t> made_;
  uint64_t frames_shared_ = 0;  // objects saved as their cache's frame (under mu_)
  int64_t dictionary_for(const std::string& resource, const std::vector<std::string_view>& samples);
  // The log (state/log_file.hpp, PATH-log), under mu_. Entries up to
  // folded_through_ are in the snapshot already; log_rows_ counts the object,
  // deletion and resourceVersion entries after it (the checkpoint entries),
  // log_checkpoint_bytes_ their encoded size; the change sets not yet
  // routed are found by id and by seq (with where their JSON is in the
  // file); meta.routed_through is the seq up to which all are routed.
  std::optional<LogFile> log_;
  int64_t next_seq_ = 1, log_rows_ = 0, routed_through_ = 0, folded_through_ = 0;
  size_t log_checkpoint_bytes_ = 0;
  size_t compacted_bytes_ = 0;  // the log's size after its last fold or rewrite
  std::atomic<int64_t> folds_{0}, log_rewrites_{0};
  // The snapshot (PATH-objects), under mu_: mapped while it is current;
  // where each resource's frames are (a frame holds one resource's entries);
  // how many objects it holds.
  using Span = std::pair<size_t, size_t>;  // [begin, end) of a resource's frames
  std::optional<LogFile> snapshot_;
  LogFile::Mapping snapshot_bytes_;
  std::map<std::string, Span, std::less<>> snapshot_of_;
  int64_t snapshot_rows_ = 0;
  std::string payload_;                        // the frame save() builds (kept: no allocation per save)
  std::vector<std::string_view> journal_ids_;  // save()'s sorted ids of its journal entries (kept, as payload_)
  struct Unrouted {
    std::string id;
    size_t offset = 0, size = 0;
  };
  std::unordered_map<std::string, int64_t> unrouted_;
  std::map<int64_t, Unrouted> unrouted_at_;
  // Folds the log into the snapshot (the old snapshot and the log's last
  // entry of each key, merged in key order into a new file renamed over
  // it), then rewrites the log holding only the change sets not yet routed.
  void fold();
  // Rewrites the log alone, holding the last checkpoint entry of each key
  // after folded_through_ (in the order written, with their seqs), then the
  // change sets not yet routed: what a log grown large with routed change
  // sets needs, without rewriting the snapshot.
  void rewrite_log();
  // The log replaced by `checkpoint` (encoded checkpoint entries) and the
  // change sets not yet routed, read from `log` (the old log, mapped), in
  // one frame; the unrouted offsets moved to the new file.
  void replace_log(std::string_view log, std::string checkpoint);
  // What save() calls when fold_due(): fold() or rewrite_log().
  void compact();
  // Reads the snapshot's layout (spans, rows, resources, folded_through_);
  // a snapshot that does not read whole is a kubetrail::Error naming it.
  void read_snapshot();
  // A resource's entries as stored: the snapshot's, then the log's newer
  // ones, in the order written (under mu_). `log` keeps the log mapped for
  // the views handed to `take`.
  void each_entry(const std::string& resource, LogFile::Mapping& log, const std::function<void(const LogEntry&)>& take);
  bool fold_due() const noexcept;
  // The log holds as many object entries as the snapshot (and fold_rows):
  // due for a fold, never a rewrite of the log alone.
  bool due_by_rows() const noexcept { return log_rows_ >= std::max(fold_rows_, snapshot_rows_); }
  // journal_done() in steps (under mu_): how far the journal is routed once
  // `ids` are; that row written; the ids forgotten (after the commit).
  int64_t routed_through_without(const std::vector<std::string>& ids) const;
  void forget_routed(const std::vector<std::string>& ids, int64_t through);
  // The outbox (PATH-outbox), under mu_; pending_ follows its count.
  std::unique_ptr<OutboxLog> outbox_;
  std::vector<int64_t> write_outbox(const std::vector<OutboxRow>& rows, const std::vector<int64_t>& delivered,
                                    const std::vector<std::pair<int64_t, std::string>>& dead, int64_t routed_through);
  void migrate_log_table();      // schema 2 -> 3 (see state_store.cpp)
  void migrate_objects_table();  // schema 3 -> 4
  void migrate_outbox_table();   // schema 4 -> 5
  int64_t meta_number(const char* key);
  // Rows of schema 3's objects table (what the 2 -> 3 conversion writes
  // before 3 -> 4 moves them into the snapshot).
  void put_object(std::string_view resource, std::string_view key, std::string_view uid,
                  std::string_view resource_version, std::string_view body, int64_t codec);
  void remove_object(std::string_view resource, std::string_view key);
  void step(sqlite3_stmt* s);  // runs a write statement to its end, then resets it
  void start();                // reads what the constructor needs from the file (may throw)
  void close() noexcept;       // finalizes the cached statements and closes the connection

  sqlite3* db_;
  std::string path_;
  std::mutex mu_;
};

}  // namespace kubetrail::state
