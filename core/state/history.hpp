// Change history (issue 17): every change set kubetrail reports, kept as it
// was handed to delivery (redacted, with its actor and catchUp flag) and
// indexed by time (every question has a window), so that "what changed in the last half
// hour, and who changed it?" is answered from kubetrail's own record.
//
// Its own SQLite file beside the state store (`STATE_PATH-history`), in WAL
// mode with normal locking: the state store holds its database exclusively,
// while `kubetrail history --state` reads this one as the daemon writes it.
// Writes are idempotent by change-set id and time (a change set routed
// again after a crash, from the journal, is one row), bounded by age and by size (oldest first).
//
// Rows are compressed (issue 15): a change set is mostly its two objects,
// ~17 KB for a Pod, and SQLite writing those bytes three times (the row's
// overflow pages, the WAL, the checkpoint) cost more than the whole watch
// event. Each row is a zstd frame against a dictionary of its resource's
// first change sets (common/dictionary_codec.hpp, as the state store packs
// objects), about a twentieth of the JSON; the first change sets of a
// resource, before its dictionary exists, are kept as text. The
// dictionaries live in the file (history_dictionaries), so a reader needs
// nothing else. The format is PRAGMA user_version: 0 was text only.
//
// A row's seq is the writer's (issue 15): one above the last it wrote, whose
// high-water mark is kept in history_meta in each commit, so a seq is never
// given twice, even once compaction has removed every row - a reader that
// follows by seq (`kubetrail history --follow`, the change stream) misses
// nothing across a restart. The table once had AUTOINCREMENT for that: its
// sqlite_sequence row, read and written per row, was a sixth of a row's
// insert. Files made before keep their table (rebuilding it could take
// minutes at a start); their sqlite_sequence is read once at open.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "model/change_set.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace kubetrail {
class DictionaryCodec;
}

namespace kubetrail::state {

// Called first thing in a process that keeps history (kubetrail's main),
// before any SQLite use: SQLite's allocation statistics off - nothing
// reads them, and every allocation of SQLite's took a process-wide mutex
// for them (a twentieth of a history row's insert). Later it does nothing.
void configure_sqlite() noexcept;

class History {
 public:
  // The history file of a state store at `state_path`.
  static std::filesystem::path path_for(const std::filesystem::path& state_path);
  // Opens (creating when `read_only` is false) the history file. Throws
  // kubetrail::Error naming the file.
  explicit History(const std::filesystem::path& path, bool read_only = false);
  ~History();
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // One transaction for the batch; ids already kept are left as they are.
  void append(std::span<const model::ChangeSet* const> batch);
  void append(const std::vector<model::ChangeSet>& batch);

  struct Filter {
    int64_t since_ms = 0, until_ms = INT64_MAX;           // observedAt, unix milliseconds, [since, until)
    std::string namespace_, resource, name, actor, type;  // "" = any; resource: plural, plural.group or kind
    std::vector<std::string> paths;  // PathPattern texts: a change set matches when one of its changes overlaps one
    size_t limit = 100;              // 0 = no limit
    // Pagination (newest first): rows after this cursor, the (time_ms, seq)
    // of the last row of the previous page; before_seq 0 = from the newest.
    int64_t before_time_ms = INT64_MAX, before_seq = 0;
    int64_t after_seq = 0;  // following: rows written after this one
    bool oldest_first = false;
    bool in_written_order = false;  // by seq (a stream's order), not by time
  };
  // A filter from named parameters - the CLI's options and the HTTP API's
  // query share these names: since, until (a duration before `now_ms` such
  // as 30m, or RFC 3339), namespace, resource, name, actor, path, type,
  // limit, cursor. `get` returns nullopt for an absent one. Throws
  // kubetrail::Error naming the parameter as `prefix` + its name (the CLI:
  // "--since").
  static Filter filter_from(const std::function<std::optional<std::string>(const std::string&)>& get, int64_t now_ms,
                            const std::string& prefix = "");
  struct Row {
    int64_t seq = 0;
    int64_t time_ms = 0;
    std::string id;    // the change set's
    std::string json;  // the change set, schema kubetrail.dev/v1
  };
  // The cursor (the API's nextCursor) that continues after `row`, as
  // filter_from() reads it back into Filter::before_*.
  static std::string cursor_after(const Row& row);
  // Matching change sets, newest first (oldest first when asked).
  std::vector<Row> query(const Filter& filter);
  int64_t last_seq();
  // The seq of change set `id`, 0 when it is not kept.
  int64_t seq_of(const std::string& id);
  // How many matching change sets fall in each of `buckets` equal spans of
  // [since_ms, until_ms) - the overview of a window too large to list.
  std::vector<uint64_t> histogram(const Filter& filter, size_t buckets);

  // Forgets rows older than max_age_ms, then the oldest while the kept
  // rows exceed max_bytes (as stored: compressed). Returns how many were
  // removed.
  size_t compact(int64_t max_age_ms, uint64_t max_bytes, int64_t now_ms);
  uint64_t bytes() const noexcept { return bytes_; }  // 0 when opened read-only
  // Transactions append() committed since open, and the most change sets
  // one of them held (what HistoryWriter's batching amounts to).
  struct Commits {
    uint64_t count = 0;
    size_t largest = 0;
  };
  Commits commits() {
    std::lock_guard lock(mu_);
    return commits_;
  }

  // The format this build writes and reads (PRAGMA user_version): 1 was
  // dictionaries of raw content only (still read), 2 has them in zstd's
  // format too (a kubetrail that knows only 1 refused those, and their rows).
  static constexpr int kFormat = 2;
  // A resource's first change sets, up to this many or
  // DictionaryCodec::kMaxDictionaryBytes, make its dictionary.
  static constexpr size_t kDictionarySamples = 32;

 private:
  void exec(const char* sql);
  // Rows are read into `json`: the text as kept, or decompressed. False,
  // with a warning naming the row, when it cannot be read.
  bool read_row(int64_t seq, std::string_view id, int64_t codec, std::string_view stored, std::string& json);
  void load_dictionaries();  // those in the file the codec lacks
  struct Packing;
  // Writer, inside append()'s transaction: the dictionary of `resource`
  // from its samples, written and used from now on; forgotten again when
  // the transaction rolls back.
  void make_dictionary(Packing& packing, const std::string& resource);
  void forget_dictionary(Packing& packing);
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::map<const char*, sqlite3_stmt*> statements_;  // the writer's inserts, prepared once (Stmt's cache)
  // Writer: the seq of the next row (under mu_), counted from the file's
  // open: a history has one writer, the daemon whose state store it sits
  // beside (a second daemon on the same state is refused by the store's
  // exclusive lock before it opens the history).
  int64_t next_seq_ = 1;
  // Writer: append()'s rows of the statement being filled, reused (their
  // strings keep their capacity).
  struct PendingRow {
    const model::ChangeSet* cs = nullptr;
    int64_t seq = 0, time_ms = 0, codec = 0;
    std::shared_ptr<const std::string> rendering;  // keeps `stored` alive when it is the text
    std::string_view resource, stored;             // resource: a key of packing_
    std::string paths, compressed;                 // stored views `compressed` when codec != 0
  };
  std::vector<PendingRow> rows_;
  // Rows go kRowsPerInsert to a statement (an INSERT's own cost - its
  // program's start and halt, the bindings' checks - was a fifth of a
  // row's), what is left of a batch one by one.
  static constexpr size_t kRowsPerInsert = 16;
  // Inserts rows_[first, first + n), n 1 or kRowsPerInsert, with one
  // statement; returns the stored bytes of those kept (not already there).
  uint64_t insert_rows(size_t first, size_t n);
  std::mutex mu_;
  uint64_t bytes_ = 0;     // sum of the kept rows' stored lengths
  Commits commits_;        // under mu_
  bool has_codec_ = true;  // false: a format-0 file opened read-only (no codec column)
  std::unique_ptr<DictionaryCodec> codec_;
  // Writer: per resource (qualified name), its dictionary's id once made,
  // else the samples that will make it.
  struct Packing {
    int64_t dictionary = 0;
    bool refused = false;  // its dictionary in the file is not one kubetrail writes: rows kept as text
    std::vector<std::string> samples;
    size_t sample_bytes = 0;
  };
  std::map<std::string, Packing, std::less<>> packing_;
  std::set<int64_t> unreadable_;  // dictionary ids refused or not in the file: not looked for again
};

}  // namespace kubetrail::state
