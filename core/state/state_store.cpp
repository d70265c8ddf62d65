#include "state/state_store.hpp"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/keyed_hash.hpp"
#include "state/sqlite_statement.hpp"

namespace kubetrail::state {

namespace {

// 2: objects.codec and the dictionaries table (compressed checkpoint rows).
// 3: the log moved out of the `log` table into its own file (PATH-log).
// 4: the checkpoint (tables `objects` and `resources`) moved into the
//    snapshot file (PATH-objects): a fold rewrites it sequentially instead
//    of an upsert per object into a B-tree (state_bench, issue 12).
// 5: the outbox (table `outbox`) moved into its own file (PATH-outbox,
//    state/outbox_log.hpp): a frame appended per batch and per handler call
//    instead of a SQLite commit each (scale_bench, issue 12); how far the
//    journal is routed is written there too, with the rows that route it.
// Older stores are converted at open (1 -> 2 -> 3 -> 4 -> 5); a kubetrail that
// knows only an older schema refuses a newer store with a message rather
// than misread it.
constexpr int kSchemaVersion = 5;
// The `log` table of schema 2 (made by the 1 -> 2 conversion, emptied into
// `objects` and the log file and dropped by 2 -> 3).
#define LOG_TABLE                                                                                           \
  "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, resource TEXT NOT NULL,"  \
  " key TEXT NOT NULL, uid TEXT NOT NULL DEFAULT '', resource_version TEXT NOT NULL DEFAULT '', body BLOB," \
  " codec INTEGER NOT NULL DEFAULT 0);"
// codec: 0 = `object` is the JSON text; N > 0 = a zstd frame compressed
// against dictionaries.id N (common/dictionary_codec.hpp).
#define OBJECTS_COLUMNS                                                                                         \
  "(resource TEXT NOT NULL, key TEXT NOT NULL, uid TEXT NOT NULL, resource_version TEXT NOT NULL, object TEXT " \
  "NOT NULL, codec INTEGER NOT NULL DEFAULT 0, UNIQUE(resource, key))"
// Schema 3's checkpoint tables (4 moved them into the snapshot file).
#define CHECKPOINT_TABLES                                                                            \
  "CREATE TABLE IF NOT EXISTS resources(resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL);" \
  "CREATE TABLE IF NOT EXISTS objects" OBJECTS_COLUMNS ";"

// Stores written before the objects table became a rowid table (same
// columns, same schema version) are converted in place, once.
std::string migrate_objects(sqlite3* db) {
  bool old = false;
  {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'objects'", -1, &q,
                           nullptr) != SQLITE_OK)
      return sqlite3_errmsg(db);
    if (sqlite3_step(q) == SQLITE_ROW) {
      auto sql = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
      old = sql && std::string_view(sql).find("WITHOUT ROWID") != std::string_view::npos;
    }
    sqlite3_finalize(q);
  }
  if (!old) return {};
  char* err = nullptr;
  if (sqlite3_exec(db,
                   "BEGIN IMMEDIATE;"
                   "ALTER TABLE objects RENAME TO objects_without_rowid;"
                   "CREATE TABLE objects" OBJECTS_COLUMNS ";"
                   "INSERT INTO objects(resource, key, uid, resource_version, object)"
                   " SELECT resource, key, uid, resource_version, object FROM objects_without_rowid;"
                   "DROP TABLE objects_without_rowid;"
                   "COMMIT;",
                   nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = std::string("cannot convert the objects table: ") + (err ? err : "error");
    sqlite3_free(err);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return why;
  }
  return {};
}

// Schema 1 -> 2: the objects table gains its codec column (every row
// already there is JSON text, codec 0), and the journal's change sets move
// into the log as change-set rows (nothing of them routed yet), in one
// transaction with the version.
std::string migrate_to_2(sqlite3* db) {
  auto exists = [&](const char* sql) {
    sqlite3_stmt* q = nullptr;
    bool yes = sqlite3_prepare_v2(db, sql, -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return yes;
  };
  std::string sql = "BEGIN IMMEDIATE;" LOG_TABLE;
  if (!exists("SELECT 1 FROM pragma_table_info('objects') WHERE name = 'codec'"))
    sql += "ALTER TABLE objects ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;";
  if (exists("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'"))
    sql +=
        "INSERT INTO log(seq, kind, resource, key, body) SELECT seq, 2, '', id, json FROM journal ORDER BY seq;"
        "DROP TABLE journal;";
  sql += "UPDATE meta SET value = '2' WHERE key = 'schema_version'; COMMIT;";
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = std::string("cannot convert the store to schema 2: ") + (err ? err : "error");
    sqlite3_free(err);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return why;
  }
  return {};
}

// A row's body column as text (codec 0) or decompressed by `codec`: "" or
// why it cannot be read. The two readers of stored bodies, load() and
// journal_pending(), go through here.
std::string decode(DictionaryCodec& codec, Stmt& q, int body, int codec_column, std::string& out) {
  if (int64_t c = sqlite3_column_int64(q.s, codec_column); c != 0) return codec.decompress(c, q.blob(body), out);
  out = q.text(body);
  return {};
}

// Opens and checks; returns the reason it cannot be used, or "".
// `busy`: the file is held by another process (see the lock below).
std::string try_open(const std::string& path, sqlite3** out, bool& busy) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return why;
  }
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  // One kubetrail per store, held for as long as it runs: the file lock is
  // taken now and never let go (two daemons on one store would deliver
  // everything twice), and no lock is taken and dropped per transaction
  // (fcntl calls, and with WAL the shared-memory index: state_bench, -30%
  // per single-event commit).
  if (sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;", nullptr, nullptr, &err) !=
      SQLITE_OK) {
    busy = sqlite3_errcode(db) == SQLITE_BUSY;
    std::string why = busy ? "it is in use by another process (another kubetrail with this state path?)"
                           : (err ? err : "cannot lock it");
    sqlite3_free(err);
    sqlite3_close(db);
    return why;
  }
  // quick_check reads the whole file: corruption is found now, not mid-run.
  std::string check;
  auto rc = sqlite3_exec(
      db, "PRAGMA quick_check",
      [](void* ud, int, char** v, char**) {
        *static_cast<std::string*>(ud) = v[0] ? v[0] : "";
        return 0;
      },
      &check, &err);
  if (rc != SQLITE_OK || check != "ok") {
    std::string why = err ? err : check;
    sqlite3_free(err);
    sqlite3_close(db);
    return why.empty() ? "integrity check failed" : why;
  }
  const char* schema =
      "PRAGMA auto_vacuum=INCREMENTAL;"  // takes effect in a new file only; see outbox_compact()
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "PRAGMA cache_size=-65536;"
      "PRAGMA mmap_size=1073741824;"
      // Checkpoint the WAL every ~80 MB rather than every 4 MB: the pages
      // every commit touches (the outbox's tail, interior B-tree pages) are
      // copied into the database once per checkpoint, not once per few
      // commits (state_bench: -25% per watch event). A WAL grown past the
      // limit by one large transaction is cut back after its checkpoint.
      "PRAGMA wal_autocheckpoint=20000;"
      "PRAGMA journal_size_limit=134217728;"
      "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      // One compression dictionary per resource (common/dictionary_codec.hpp),
      // never changed once written: every compressed row names its own.
      "CREATE TABLE IF NOT EXISTS dictionaries(id INTEGER PRIMARY KEY, resource TEXT NOT NULL UNIQUE,"
      " content BLOB NOT NULL);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "cannot create tables";
    sqlite3_free(err);
    sqlite3_close(db);
    return why;
  }
  std::string version;
  {
    Stmt get(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (sqlite3_step(get.s) == SQLITE_ROW) version = get.text(0);
  }
  if (version.empty()) {  // a new store: its tables were made just now, in the current layout
    version = std::to_string(kSchemaVersion);
    sqlite3_exec(db, ("INSERT INTO meta VALUES('schema_version', '" + version + "')").c_str(), nullptr, nullptr,
                 nullptr);
  }
  if (version == "1") {
    std::string why = migrate_objects(db);
    if (why.empty()) why = migrate_to_2(db);
    if (!why.empty()) {
      sqlite3_close(db);
      return why;
    }
    version = "2";
  }
  // 2 -> 3 -> 4 -> 5 need the store's codec and its files: StateStore::start().
  if (version != "2" && version != "3" && version != "4" && version != std::to_string(kSchemaVersion)) {
    sqlite3_close(db);
    return "state schema version " + version + " is not " + std::to_string(kSchemaVersion) +
           " (written by another kubetrail)";
  }
  *out = db;
  return {};
}

}  // namespace

std::unique_ptr<StateStore> StateStore::open(const std::string& path, bool reset) {
  return open(path, reset, kFoldRows);
}

std::unique_ptr<StateStore> StateStore::open(const std::string& path, bool reset, int64_t fold_rows,
                                             size_t fold_bytes) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  // Opens and starts the store: "" and the store, or why it cannot be used.
  auto attempt = [&](std::unique_ptr<StateStore>& out, bool& busy) -> std::string {
    sqlite3* db = nullptr;
    std::string why = try_open(path, &db, busy);
    if (!why.empty()) return why;
    try {
      out.reset(new StateStore(db, path, fold_rows, fold_bytes));
    } catch (const Error& e) {  // the constructor has closed the connection
      return e.what();
    }
    return {};
  };
  std::unique_ptr<StateStore> store;
  bool busy = false;
  std::string why = attempt(store, busy);
  if (busy) throw Error("state store " + path + " cannot be used: " + why);  // never set aside: it is someone's
  if (!why.empty() && reset) {
    auto stamp =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string aside = path + ".corrupt-" + std::to_string(stamp);
    std::filesystem::rename(path, aside, ec);
    for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
    for (const char* file : {"-log", "-objects", "-outbox"})  // its files go with it
      std::filesystem::rename(path + file, aside + file, ec);
    why = attempt(store, busy);
  }
  if (!why.empty())
    throw Error("state store " + path + " cannot be used: " + why +
                " (move it away, or start with --reset-state to set it aside and start fresh)");
  return store;
}

namespace {
// A resource's compression dictionary is made from its first save of at
// least this many objects (a list page), or else by the first fold.
constexpr size_t kDictionarySamples = 256;
// A snapshot frame holds at most about this much (and one resource only).
constexpr size_t kSnapshotFrameBytes = size_t{1} << 20;
// No store counts this far (2^62 saves); a number above it in a file was
// not written by kubetrail.
constexpr int64_t kMaxSeq = int64_t{1} << 62;
}  // namespace

// The log is folded into the snapshot once it holds fold_rows object
// entries (kFoldRows) and as many as the snapshot holds, or fold_bytes
// (kFoldBytes) and the snapshot's size: a fold writes the whole snapshot,
// so this way each object is written about twice per time the log fills
// (an LSM's amortization), the log stays no larger than the snapshot
// (start-up reads both), and an object changed many times is written once.
// A log that is large only with change sets is rewritten alone (compact()).
StateStore::StateStore(sqlite3* db, std::string path, int64_t fold_rows, size_t fold_bytes)
    : fold_rows_(fold_rows), fold_bytes_(fold_bytes), db_(db), path_(std::move(path)) {
  // A store that cannot be started (a tampered meta row, a foreign log, a
  // failed fold) throws from here, where no destructor runs: close the
  // connection first (LeakSanitizer found the leak).
  try {
    start();
  } catch (...) {
    close();
    throw;
  }
}

int64_t StateStore::meta_number(const char* key) {
  Stmt q(db_, "SELECT value FROM meta WHERE key = ?");
  q.bind(1, key);
  if (sqlite3_step(q.s) != SQLITE_ROW) return 0;
  // A value from the file (one a user points at): a number, or the store
  // cannot be trusted to know what was routed or folded.
  std::string v = q.text(0);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < 0)
    throw Error(std::string("meta ") + key + " is \"" + v.substr(0, 40) + "\", not a sequence number");
  return n;
}

void StateStore::start() {
  {  // (statements finished before the conversion below drops a table)
    Stmt dicts(db_, "SELECT id, resource, content FROM dictionaries");
    while (sqlite3_step(dicts.s) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(dicts.s, 0);
      // Untrusted bytes: one zstd does not take is left out. The objects
      // compressed against it are unreadable (listed again, as any such
      // object); the resource's objects are saved as text from now on
      // (its name is taken: a second dictionary for it cannot be written).
      if (std::string why = codec_.add_dictionary(id, dicts.blob(2)); !why.empty()) {
        spdlog::warn("state store {}: dictionary {} (of {}) is left out: {}", path_, id, dicts.text(1), why);
        refused_dictionaries_.emplace(dicts.text(1));
        continue;
      }
      fingerprint_of_[id] = DictionaryCodec::fingerprint(dicts.blob(2));
      dictionary_of_.emplace(dicts.text(1), id);
    }
  }
  routed_through_ = meta_number("routed_through");
  folded_through_ = meta_number("log_folded_through");
  // The log file names the store it belongs to: a log left behind by a
  // store that was deleted is never read as this one's.
  int64_t id = meta_number("log_id");
  if (id == 0) {
    unsigned char raw[7];
    if (RAND_bytes(raw, sizeof raw) != 1) throw Error("state store " + path_ + ": cannot draw a log id");
    for (unsigned char c : raw) id = (id << 8) | c;
    id |= 1;  // never 0 (0 is "none yet")
    Stmt put(db_, "INSERT INTO meta VALUES('log_id', ?)");
    std::string v = std::to_string(id);
    put.bind(1, v);
    step(put.s);
    // A store without a log id is new (or older than the log file): a log
    // already there is another store's, left behind when its SQLite file
    // was deleted to start afresh. Kept, renamed, never read as this one's.
    for (std::string file : {path_ + "-log", path_ + "-objects", path_ + "-outbox"}) {
      std::error_code ec;
      if (std::filesystem::file_size(file, ec) == 0 || ec) continue;
      auto stamp =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      std::string aside = file + ".orphaned-" + std::to_string(stamp);
      std::filesystem::rename(file, aside, ec);
      if (ec) throw Error("state file " + file + " belongs to another store and cannot be moved away: " + ec.message());
      spdlog::warn("state store {}: {} belongs to no store (its SQLite file was deleted?); moved to {}", path_, file,
                   aside);
    }
  }
  std::lock_guard lock(mu_);
  log_.emplace(LogFile::open(path_ + "-log", static_cast<uint64_t>(id)));
  snapshot_.emplace(LogFile::open(path_ + "-objects", static_cast<uint64_t>(id)));
  std::string version;
  {
    Stmt q(db_, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (sqlite3_step(q.s) == SQLITE_ROW) version = q.text(0);
  }
  if (version == "2") migrate_log_table();
  if (version == "2" || version == "3") migrate_objects_table();
  outbox_ = OutboxLog::open(path_ + "-outbox", static_cast<uint64_t>(id));
  if (version != std::to_string(kSchemaVersion)) migrate_outbox_table();
  pending_ = outbox_->pending_count();
  // Older stores kept it in meta; since schema 5 the outbox file has it.
  routed_through_ = std::max(routed_through_, outbox_->routed_through());
  read_snapshot();
  auto mapped = log_->map();
  std::string_view bytes = mapped.bytes();
  int64_t last = std::max(routed_through_, folded_through_);
  std::optional<int64_t> bad_seq;
  auto scan = LogFile::scan(bytes, [&](const LogEntry& e, size_t body_at) {
    if ((e.seq < 0 || e.seq > kMaxSeq) && !bad_seq) bad_seq = e.seq;
    last = std::max(last, e.seq);
    // Checkpoint entries up to folded_through_ are in the snapshot already
    // (kubetrail stopped between a fold and the rewrite of the log); change
    // sets are read by routed_through alone (a rewrite keeps their seqs).
    if (e.kind != LogKind::kChangeSet) {
      if (e.seq > folded_through_) {
        ++log_rows_;
        log_checkpoint_bytes_ += LogFile::encoded_size(e);
      }
    } else if (e.seq > routed_through_ && unrouted_.emplace(std::string(e.key), e.seq).second) {
      unrouted_at_.emplace(e.seq, Unrouted{std::string(e.key), body_at, e.body.size()});
    }
  });
  if (!scan.stopped.empty()) {
    // The last save was cut short by the crash (or the file was damaged):
    // what it held was never handed on, and the checkpoint it would have
    // advanced is older, so the catch-up reports those changes again.
    spdlog::warn("state log {}: {}; dropped from there on ({} bytes; their changes are found again by the catch-up)",
                 log_->path(), scan.stopped, bytes.size() - scan.end);
    log_->truncate(scan.end);
  }
  // Sequence numbers are read from the file: one no kubetrail wrote would
  // overflow the next one (a tampered file, whose frames still checksum).
  if (bad_seq || last > kMaxSeq)
    throw Error("state log " + log_->path() + " holds entry " + std::to_string(bad_seq.value_or(last)) +
                ", not a sequence number kubetrail writes");
  next_seq_ = last + 1;
  compacted_bytes_ = log_->size();
  // Start from a short log: folded, and holding only what is not routed.
  if (log_->size() > LogFile::kHeaderBytes) fold();
}

// Schema 2 kept the log in a table. Its object rows go into `objects` and
// its change sets not yet routed into the log file, then the table is
// dropped, in one transaction after the file is written: a crash between
// the two converts again from the table (the file is rewritten whole, so
// nothing is in it twice).
void StateStore::migrate_log_table() {
  std::string payload;
  {
    Stmt q(db_, "SELECT seq, key, body, codec FROM log WHERE kind = 2 AND seq > ? ORDER BY seq");
    sqlite3_bind_int64(q.s, 1, routed_through_);
    std::string json;
    while (sqlite3_step(q.s) == SQLITE_ROW) {
      std::string id = q.text(1);
      if (std::string why = decode(codec_, q, 2, 3, json); !why.empty()) {
        // The catch-up finds the change again (the checkpoint it covered is
        // converted below, so not always): say so rather than stop.
        spdlog::warn("state store {}: journal entry {} cannot be read ({}); dropped", path_, id, why);
        continue;
      }
      LogFile::encode(payload, {LogKind::kChangeSet, sqlite3_column_int64(q.s, 0), {}, id, {}, {}, json});
    }
  }
  log_->replace(payload);
  transaction([&] {
    {
      Stmt rows(db_,
                "SELECT kind, resource, key, uid, resource_version, body, codec FROM log WHERE kind IN (0, 1)"
                " ORDER BY seq");
      while (sqlite3_step(rows.s) == SQLITE_ROW) {
        if (sqlite3_column_int(rows.s, 0) == 1) {
          remove_object(rows.text(1), rows.text(2));
          continue;
        }
        int64_t codec = sqlite3_column_int64(rows.s, 6);
        put_object(rows.text(1), rows.text(2), rows.text(3), rows.text(4), codec ? rows.blob(5) : rows.text(5), codec);
      }
    }  // no statement may still read the table it drops
    exec("DROP TABLE log");
    exec("UPDATE meta SET value = '3' WHERE key = 'schema_version'");
  });
}

StateStore::~StateStore() { close(); }

void StateStore::close() noexcept {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
  sqlite3_close(db_);
  db_ = nullptr;
}

template <class F>
void StateStore::transaction(F&& body) {
  exec("BEGIN IMMEDIATE");
  made_.clear();
  try {
    body();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    for (int64_t id : made_) {  // dictionaries of the rolled-back transaction are not in the file
      codec_.remove_dictionary(id);
      fingerprint_of_.erase(id);
      for (auto it = dictionary_of_.begin(); it != dictionary_of_.end();)
        it = it->second == id ? dictionary_of_.erase(it) : std::next(it);
    }
    made_.clear();
    throw;
  }
  made_.clear();
}

void StateStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "error";
    sqlite3_free(err);
    throw Error("state store " + path_ + ": " + why);
  }
}

void StateStore::step(sqlite3_stmt* s) {
  if (sqlite3_step(s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  sqlite3_reset(s);
}

namespace {

// An entry's body as text: decompressed by `codec` when it is a zstd frame.
// "" or why it cannot be read.
std::string unpacked(DictionaryCodec& codec, const LogEntry& e, std::string& out) {
  if (e.codec != 0) return codec.decompress(e.codec, e.body, out);
  out.assign(e.body);
  return {};
}

// Snapshot order: by resource, its resourceVersion first, then its objects
// by key (byte order, as SQLite's BINARY collation and std::string_view
// compare).
using SnapshotKey = std::tuple<std::string_view, bool, std::string_view>;
SnapshotKey snapshot_key(const LogEntry& e) {
  const bool object = e.kind != LogKind::kResourceVersion;
  return {e.resource, object, object ? e.key : std::string_view()};
}

}  // namespace

void StateStore::each_entry(const std::string& resource, LogFile::Mapping& log,
                            const std::function<void(const LogEntry&)>& take) {
  auto mine = [&](const LogEntry& e) {
    if (e.resource == resource) take(e);
  };
  if (auto span = snapshot_of_.find(resource); span != snapshot_of_.end()) {
    auto scan = LogFile::scan(snapshot_bytes_.bytes(), span->second.first, span->second.second,
                              [&](const LogEntry& e, const LogFile::Place&) { mine(e); });
    if (!scan.stopped.empty()) throw Error("state snapshot " + snapshot_->path() + ": " + scan.stopped);
  }
  if (log_rows_ == 0) return;
  log = log_->map();
  auto scan = LogFile::scan(log.bytes(), [&](const LogEntry& e, size_t) {
    if (e.seq > folded_through_) mine(e);
  });
  if (!scan.stopped.empty()) throw Error("state log " + log_->path() + ": " + scan.stopped);
}

std::optional<StateStore::Checkpoint> StateStore::load(const std::string& resource) {
  std::lock_guard lock(mu_);
  Checkpoint cp;
  bool found = false;
  std::map<std::string, LogEntry, std::less<>> entries;
  std::string_view rv;
  LogFile::Mapping log;
  each_entry(resource, log, [&](const LogEntry& e) {
    switch (e.kind) {
      case LogKind::kResourceVersion: rv = e.resource_version, found = true; break;
      case LogKind::kObject: entries.insert_or_assign(std::string(e.key), e); break;
      case LogKind::kDeleted: entries.erase(std::string(e.key)); break;
      default: break;
    }
  });
  if (!found) return std::nullopt;
  cp.resource_version = std::string(rv);
  for (const auto& [key, e] : entries) {
    model::StoredObject o;
    o.uid = std::string(e.uid);
    o.resource_version = std::string(e.resource_version);
    if (std::string why = unpacked(codec_, e, o.json); !why.empty()) {
      cp.unreadable.emplace_back(key, std::move(why));
      continue;
    }
    cp.objects.emplace(key, std::move(o));
  }
  return cp;
}

std::vector<std::string> StateStore::keys(const std::string& resource) {
  std::lock_guard lock(mu_);
  std::set<std::string, std::less<>> keys;
  LogFile::Mapping log;
  each_entry(resource, log, [&](const LogEntry& e) {
    if (e.kind == LogKind::kObject && !keys.count(e.key))
      keys.emplace(e.key);
    else if (e.kind == LogKind::kDeleted)
      keys.erase(std::string(e.key));
  });
  return {keys.begin(), keys.end()};
}

void StateStore::put_object(std::string_view resource, std::string_view key, std::string_view uid,
                            std::string_view resource_version, std::string_view body, int64_t codec) {
  // An upsert, not INSERT OR REPLACE: REPLACE deletes the row and inserts
  // it under a new rowid, which rewrites the index page too.
  Stmt up(cache_, db_,
          "INSERT INTO objects(resource, key, uid, resource_version, object, codec) VALUES(?,?,?,?,?,?)"
          " ON CONFLICT(resource, key) DO UPDATE SET uid = excluded.uid,"
          " resource_version = excluded.resource_version, object = excluded.object, codec = excluded.codec");
  up.bind(1, resource);
  up.bind(2, key);
  up.bind(3, uid);
  up.bind(4, resource_version);
  up.bind_object(5, body, codec);
  step(up.s);
}

void StateStore::remove_object(std::string_view resource, std::string_view key) {
  Stmt del(cache_, db_, "DELETE FROM objects WHERE resource = ? AND key = ?");
  del.bind(1, resource);
  del.bind(2, key);
  step(del.s);
}

namespace {
// An object's body as a row holds it: compressed against the resource's
// dictionary unless that does not make it smaller (or there is none).
std::pair<std::string_view, int64_t> packed(DictionaryCodec& codec, int64_t dictionary, std::string_view text) {
  if (!dictionary) return {text, 0};
  std::string_view frame = codec.compress(dictionary, text);
  return frame.size() < text.size() ? std::pair{frame, dictionary} : std::pair{text, int64_t{0}};
}
}  // namespace

namespace {

// Writes a snapshot: entries in snapshot order into frames of one resource
// each, and where each resource's frames are.
class SnapshotWriter {
 public:
  SnapshotWriter(LogFile& file, int64_t folded_through) : out_(file.rewrite()) {
    LogFile::encode(frame_, {LogKind::kFoldedThrough, folded_through});
    flush();
  }
  // Deletions are left out: a snapshot holds what is there.
  void put(const LogEntry& e) {
    if (e.kind != LogKind::kObject && e.kind != LogKind::kResourceVersion) return;
    if (e.resource != resource_ || frame_.size() >= kSnapshotFrameBytes) {
      flush();
      resource_ = e.resource;
    }
    LogFile::encode(frame_, e);
    if (e.kind == LogKind::kObject)
      ++rows_;
    else
      resources_.emplace(resource_);
  }
  void commit() {
    flush();
    out_.commit();
  }
  std::map<std::string, std::pair<size_t, size_t>, std::less<>> spans;

  int64_t rows() const noexcept { return rows_; }
  std::set<std::string, std::less<>>& resources() noexcept { return resources_; }  // with a resourceVersion

 private:
  void flush() {
    if (frame_.empty()) return;
    const size_t begin = out_.size();
    out_.add(frame_);
    frame_.clear();
    if (resource_.empty()) return;  // the first frame: folded_through
    auto [it, added] = spans.try_emplace(resource_, begin, out_.size());
    if (!added) it->second.second = out_.size();
  }
  LogFile::Rewrite out_;
  std::string frame_, resource_;
  int64_t rows_ = 0;
  std::set<std::string, std::less<>> resources_;
};

}  // namespace

void StateStore::read_snapshot() {
  snapshot_bytes_ = snapshot_->map();
  std::map<std::string, Span, std::less<>> spans;
  std::set<std::string, std::less<>> resources;
  int64_t rows = 0, through = -1;
  // Snapshot order, checked: a fold merges the snapshot with the log in one
  // pass on it, so a snapshot out of order (tampered with, its frames
  // checksummed again) would keep a key twice or an old state over a newer.
  std::optional<SnapshotKey> previous;
  std::optional<size_t> disorder;  // the byte of the first entry out of order
  auto scan = LogFile::scan(snapshot_bytes_.bytes(), LogFile::kHeaderBytes, std::string_view::npos,
                            [&](const LogEntry& e, const LogFile::Place& at) {
                              if (e.kind == LogKind::kFoldedThrough) {
                                through = e.seq < 0 || e.seq > kMaxSeq ? kMaxSeq + 1 : e.seq;
                                return;
                              }
                              if (e.kind != LogKind::kObject && e.kind != LogKind::kResourceVersion)
                                return;  // not in a snapshot kubetrail wrote: ignored
                              const SnapshotKey key = snapshot_key(e);
                              if (previous && !(*previous < key) && !disorder) disorder = at.frame_begin;
                              previous = key;
                              if (e.kind == LogKind::kObject)
                                ++rows;
                              else if (!resources.count(e.resource))
                                resources.emplace(e.resource);
                              auto it = spans.find(e.resource);
                              if (it == spans.end())
                                it = spans.emplace(std::string(e.resource), Span{at.frame_begin, at.frame_end}).first;
                              it->second.first = std::min(it->second.first, at.frame_begin);
                              it->second.second = std::max(it->second.second, at.frame_end);
                            });
  // A snapshot is synced before it is renamed into place: one that does not
  // read whole was damaged afterwards, and the checkpoint cannot be trusted.
  if (!scan.stopped.empty()) throw Error("state snapshot " + snapshot_->path() + " is damaged: " + scan.stopped);
  if (disorder)
    throw Error("state snapshot " + snapshot_->path() + " is damaged: byte " + std::to_string(*disorder) +
                ": an entry out of order (a snapshot is sorted by resource, then key)");
  if (through > kMaxSeq)
    throw Error("state snapshot " + snapshot_->path() + " is damaged: it says it holds the log up to an entry " +
                "kubetrail never writes");
  snapshot_of_ = std::move(spans);
  snapshot_rows_ = rows;
  known_ = std::move(resources);
  if (through >= 0) folded_through_ = through;  // else a new store: nothing folded yet
}

// Schema 3 kept the checkpoint in the tables `resources` and `objects`:
// they are written into the snapshot (synced and renamed into place), then
// dropped in one transaction with the version. A crash between the two
// converts again from the tables, into a new snapshot.
void StateStore::migrate_objects_table() {
  exec(CHECKPOINT_TABLES);  // (a store written before they existed has none)
  {
    SnapshotWriter out(*snapshot_, folded_through_);
    // In snapshot order: resource, its resourceVersion, its objects by key.
    Stmt q(db_,
           "SELECT resource, 0, '', '', resource_version, '', 0 FROM resources"
           " UNION ALL SELECT resource, 1, key, uid, resource_version, object, codec FROM objects ORDER BY 1, 2, 3");
    while (sqlite3_step(q.s) == SQLITE_ROW) {
      LogEntry e;
      e.kind = sqlite3_column_int(q.s, 1) ? LogKind::kObject : LogKind::kResourceVersion;
      e.resource = q.blob(0);
      e.key = q.blob(2);
      e.uid = q.blob(3);
      e.resource_version = q.blob(4);
      e.body = q.blob(5);
      e.codec = sqlite3_column_int64(q.s, 6);
      out.put(e);
    }
    out.commit();
  }  // no statement may still read the tables it drops
  transaction([&] {
    exec("DROP TABLE objects");
    exec("DROP TABLE resources");
    exec("DELETE FROM meta WHERE key = 'log_folded_through'");
    exec("UPDATE meta SET value = '4' WHERE key = 'schema_version'");
  });
}

bool StateStore::fold_due() const noexcept {
  // By size too: change sets alone grow the log; and never again right
  // away when what is left after a fold (change sets not yet routed) is
  // already large.
  return due_by_rows() || log_->size() >= std::max({fold_bytes_, 2 * compacted_bytes_, snapshot_->size()});
}

void StateStore::compact() {
  // Due by its bytes alone while its checkpoint entries are less than half
  // the snapshot's size, the log is mostly change sets already routed: large
  // ones (a ConfigMap's data, objects in change sets), or many changes to
  // few objects (a hot key's entries are kept once). Rewriting the log alone
  // keeps what is live in it and leaves the snapshot be (at 100k Pods ~15
  // MB, its fold ~0.16 s of CPU: scale_bench's profile). The checkpoint
  // entries a rewrite keeps are copied again by the next one, so once they
  // are half the snapshot a fold takes them. Due by rows, it is a fold.
  if (!due_by_rows() && 2 * log_checkpoint_bytes_ < snapshot_->size())
    rewrite_log();
  else
    fold();
}

namespace {
// Big-endian: the first of two such numbers is smaller exactly when its
// bytes are, compared in order.
uint64_t be_prefix(std::string_view bytes, size_t from) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i)
    v = (v << 8) | (from + i < bytes.size() ? static_cast<unsigned char>(bytes[from + i]) : 0);
  return v;
}

// `entries` (one per key) sorted into snapshot order. Keys of one cluster
// share long beginnings ("namespace/deployment-replicaset-"), so comparing
// them whole was most of a fold: each entry gets the 8 bytes of its key
// after the part every key shares, compared as one number, and keys are
// compared whole only where those are equal (zero-padded: a key that ends
// sorts before one that goes on, as in byte order). Resources get their
// rank in byte order.
void sort_in_snapshot_order(std::vector<LogEntry>& entries) {
  if (entries.size() < 2) return;
  std::optional<std::string_view> first;  // an object's key: every key shares its first `shared` bytes
  size_t shared = 0;
  std::vector<std::string_view> resources;
  for (const LogEntry& e : entries) {
    if (resources.empty() || resources.back() != e.resource) resources.push_back(e.resource);
    const auto [resource, object, key] = snapshot_key(e);
    if (!object) continue;
    if (!first) {
      first = key;
      shared = key.size();
    }
    size_t n = 0;
    while (n < shared && n < key.size() && key[n] == (*first)[n]) ++n;
    shared = n;
  }
  std::sort(resources.begin(), resources.end());
  resources.erase(std::unique(resources.begin(), resources.end()), resources.end());
  struct Sortable {
    uint32_t resource;  // rank in `resources`
    bool object;
    uint64_t prefix;
    uint32_t index;  // into entries
  };
  std::vector<Sortable> order;
  order.reserve(entries.size());
  for (uint32_t i = 0; i < entries.size(); ++i) {
    const LogEntry& e = entries[i];
    const auto [resource, object, key] = snapshot_key(e);
    const auto rank = std::lower_bound(resources.begin(), resources.end(), resource) - resources.begin();
    order.push_back({static_cast<uint32_t>(rank), object, object ? be_prefix(key, shared) : 0, i});
  }
  std::sort(order.begin(), order.end(), [&](const Sortable& a, const Sortable& b) {
    if (a.resource != b.resource) return a.resource < b.resource;
    if (a.object != b.object) return a.object < b.object;
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    return std::get<2>(snapshot_key(entries[a.index])) < std::get<2>(snapshot_key(entries[b.index]));
  });
  std::vector<LogEntry> sorted;
  sorted.reserve(entries.size());
  for (const Sortable& o : order) sorted.push_back(entries[o.index]);
  entries.swap(sorted);
}

// The log's last checkpoint entry of each key after `folded_through` (an
// object changed many times is written once), each key where it first
// appears (a fold sorts them into snapshot order; a rewrite keeps the order
// written); `through`: the highest seq among them. What start() could not read it cut off;
// anything else is someone else writing the file: a kubetrail::Error.
// `expected`: about how many there are (the log's object entries).
std::vector<LogEntry> last_entries(const LogFile& file, std::string_view bytes, int64_t folded_through,
                                   int64_t& through, size_t expected) {
  struct KeyHash {  // keyed: the keys are objects' names (common/keyed_hash.hpp)
    size_t operator()(const SnapshotKey& k) const noexcept {
      const auto& [resource, object, key] = k;
      return keyed_hash(key) ^ (resource.size() << 1) ^ object;
    }
  };
  std::vector<LogEntry> last;
  std::unordered_map<SnapshotKey, size_t, KeyHash> where;  // index in `last` of each key's entry
  last.reserve(expected);
  where.reserve(expected);
  through = folded_through;
  auto scan = LogFile::scan(bytes, [&](const LogEntry& e, size_t) {
    if (e.kind == LogKind::kChangeSet || e.kind == LogKind::kFoldedThrough || e.seq <= folded_through) return;
    through = std::max(through, e.seq);
    auto [it, added] = where.try_emplace(snapshot_key(e), last.size());
    if (added)
      last.push_back(e);
    else
      last[it->second] = e;  // a later entry of the key: the newer
  });
  if (!scan.stopped.empty()) throw Error("state log " + file.path() + ": " + scan.stopped);
  return last;
}
}  // namespace

void StateStore::rewrite_log() {
  auto mapped = log_->map();
  std::string_view bytes = mapped.bytes();
  int64_t through = 0;
  auto last = last_entries(*log_, bytes, folded_through_, through, static_cast<size_t>(log_rows_));
  // In the order written: load() and keys() apply a resource's entries in
  // file order (its last entries only, here, so the order of two keys does
  // not matter; it is kept to read as the log did).
  std::vector<const LogEntry*> kept;
  kept.reserve(last.size());
  for (const LogEntry& e : last) kept.push_back(&e);
  std::sort(kept.begin(), kept.end(), [](const LogEntry* a, const LogEntry* b) { return a->seq < b->seq; });
  std::string checkpoint;
  for (const LogEntry* e : kept) LogFile::encode(checkpoint, *e);
  const size_t checkpoint_bytes = checkpoint.size();
  replace_log(bytes, std::move(checkpoint));
  // (Counted once the new log is in place: a rewrite that throws left the
  // old one, whose counts these still are.)
  log_rows_ = static_cast<int64_t>(kept.size());
  log_checkpoint_bytes_ = checkpoint_bytes;
  ++log_rewrites_;
}

void StateStore::replace_log(std::string_view log, std::string checkpoint) {
  std::string payload = std::move(checkpoint);
  std::vector<std::pair<Unrouted*, size_t>> moved;
  for (auto& [seq, u] : unrouted_at_) {
    size_t at = LogFile::encode(payload, {LogKind::kChangeSet, seq, {}, u.id, {}, {}, log.substr(u.offset, u.size)});
    moved.emplace_back(&u, at);
  }
  size_t base = log_->replace(payload);
  for (auto& [u, at] : moved) u->offset = base + at;
  compacted_bytes_ = log_->size();
}

void StateStore::fold() {
  auto mapped = log_->map();
  std::string_view bytes = mapped.bytes();
  int64_t through = 0;
  auto last = last_entries(*log_, bytes, folded_through_, through, static_cast<size_t>(log_rows_));
  sort_in_snapshot_order(last);  // the merge below is one pass in that order
  if (!last.empty()) {
    // A resource without a dictionary gets one from the objects it has here
    // (committed before the snapshot that names it).
    for (auto it = last.begin(); it != last.end();) {
      const std::string_view resource = it->resource;
      std::vector<std::string_view> samples;
      for (; it != last.end() && it->resource == resource; ++it)
        if (it->kind == LogKind::kObject && it->codec == 0) samples.push_back(it->body);
      if (!samples.empty() && !dictionary_of_.count(resource)) dictionary_for(std::string(resource), samples);
    }
    SnapshotWriter out(*snapshot_, through);
    auto put = [&](const LogEntry& e) {
      if (e.kind != LogKind::kObject || e.codec != 0) return out.put(e);
      auto d = dictionary_of_.find(e.resource);
      LogEntry p = e;
      std::tie(p.body, p.codec) = packed(codec_, d == dictionary_of_.end() ? 0 : d->second, e.body);
      out.put(p);
    };
    // The old snapshot and `last` merged: one sequential pass over each.
    auto next = last.begin();
    auto old = LogFile::scan(snapshot_bytes_.bytes(), [&](const LogEntry& e, size_t) {
      if (e.kind != LogKind::kObject && e.kind != LogKind::kResourceVersion) return;
      const SnapshotKey key = snapshot_key(e);
      for (; next != last.end() && snapshot_key(*next) < key; ++next) put(*next);
      if (next != last.end() && snapshot_key(*next) == key) {
        put(*next);  // the log's is newer (a deletion leaves the key out)
        ++next;
        return;
      }
      put(e);
    });
    if (!old.stopped.empty()) throw Error("state snapshot " + snapshot_->path() + ": " + old.stopped);
    for (; next != last.end(); ++next) put(*next);
    // From here the snapshot holds everything up to `through`; were
    // kubetrail to die before the log is rewritten below, the old log is
    // read again and what the snapshot holds skipped.
    out.commit();
    LogFile::Mapping fresh = snapshot_->map();
    snapshot_bytes_ = std::move(fresh);
    snapshot_of_ = std::move(out.spans);
    snapshot_rows_ = out.rows();
    known_ = std::move(out.resources());
  }
  folded_through_ = through;
  log_rows_ = 0;
  log_checkpoint_bytes_ = 0;
  ++folds_;
  replace_log(bytes, {});  // keeps only the change sets not yet routed
}

void StateStore::save(const std::string& resource,
                      const std::vector<std::pair<std::string, const model::StoredObject*>>& upserts,
                      const std::vector<std::string>& deletes, const std::string& resource_version,
                      const std::vector<JournalEntry>& journal, const model::ObjectStore* cache) {
  std::lock_guard lock(mu_);
  // An object's text: from the cache that holds it (which may keep it
  // compressed), valid until the next call.
  auto text_of = [&](const model::StoredObject& o) { return cache ? cache->text(o) : std::string_view(o.json); };
  payload_.clear();
  int64_t seq = next_seq_;
  struct Journaled {
    const JournalEntry* entry;
    int64_t seq;
    size_t at;
  };
  std::vector<Journaled> journaled;
  // A change set already waiting to be routed (the same transition computed
  // again, e.g. by a catch-up after a crash) is kept once, and so is one
  // twice in this very save - which is rare: whether it happens at all is
  // one sort of the ids (a search of the ones before for each was
  // quadratic in a burst's commit).
  journal_ids_.clear();
  for (const auto& e : journal) journal_ids_.push_back(e.id);
  std::sort(journal_ids_.begin(), journal_ids_.end());
  const bool repeats = std::adjacent_find(journal_ids_.begin(), journal_ids_.end()) != journal_ids_.end();
  for (const auto& e : journal) {
    if (unrouted_.count(e.id)) continue;
    if (repeats && std::any_of(journaled.begin(), journaled.end(), [&](const auto& j) { return j.entry->id == e.id; }))
      continue;
    size_t at = LogFile::encode(payload_, {LogKind::kChangeSet, seq, {}, e.id, {}, {}, e.text()});
    journaled.push_back({&e, seq++, at});
  }
  const int64_t first_row = seq;
  const size_t checkpoint_at = payload_.size();
  const bool with_rv = !resource_version.empty() || !known_.count(resource);
  // Compressed now rather than at the fold: the fold stores the frame as it
  // is, and the log is written a tenth as large (state_bench: writing 2.7 KB
  // a Pod into the page cache cost more than compressing it). A resource's
  // first list page makes its dictionary.
  auto dictionary = dictionary_of_.find(resource);
  if (dictionary == dictionary_of_.end() && upserts.size() >= kDictionarySamples) {
    std::vector<std::string> texts;  // copies: text_of() reuses its buffer (a dictionary takes only the first 64 KB)
    size_t bytes = 0;
    for (const auto& [key, obj] : upserts) {
      if (bytes >= DictionaryCodec::kMaxDictionaryBytes) break;
      texts.emplace_back(text_of(*obj));
      bytes += texts.back().size();
    }
    dictionary_for(resource, std::vector<std::string_view>(texts.begin(), texts.end()));
    dictionary = dictionary_of_.find(resource);
  }
  // A cache that packs with this very dictionary (pack_with(), after
  // dictionary_content()) holds each object as the frame this would write:
  // it is written as it is, not decompressed and compressed again (perf,
  // 100k pods: that was most of what a state store added to an event).
  const int64_t dictionary_id = dictionary == dictionary_of_.end() ? 0 : dictionary->second;
  const bool shares_frames = cache && dictionary_id != 0 && cache->dictionary_fingerprint() != 0 &&
                             cache->dictionary_fingerprint() == fingerprint_of_[dictionary_id];
  for (const auto& [key, obj] : upserts) {
    std::pair<std::string_view, int64_t> stored;
    if (shares_frames && obj->packed) {
      stored = {model::ObjectStore::frame(*obj), dictionary_id};
      ++frames_shared_;
    } else {
      stored = packed(codec_, dictionary_id, text_of(*obj));
    }
    LogFile::encode(payload_, {LogKind::kObject, seq++, resource, key, obj->uid, obj->resource_version, stored.first,
                               stored.second});
  }
  for (const auto& key : deletes) LogFile::encode(payload_, {LogKind::kDeleted, seq++, resource, key});
  if (with_rv) LogFile::encode(payload_, {LogKind::kResourceVersion, seq++, resource, {}, {}, resource_version});
  // One write: from here the change sets are durable (against kill -9; the
  // page cache has them) together with the checkpoint entries they cover.
  size_t base = payload_.empty() ? 0 : log_->append(payload_);
  next_seq_ = seq;
  log_rows_ += seq - first_row;
  log_checkpoint_bytes_ += payload_.size() - checkpoint_at;
  for (const auto& j : journaled) {
    unrouted_.emplace(j.entry->id, j.seq);
    unrouted_at_.emplace(j.seq, Unrouted{j.entry->id, base + j.at, j.entry->text().size()});
  }
  if (!known_.count(resource)) known_.emplace(resource);
  if (fold_due()) compact();
}

uint64_t StateStore::dictionary_fingerprint(std::string_view resource) {
  std::lock_guard lock(mu_);
  auto it = dictionary_of_.find(resource);
  return it == dictionary_of_.end() ? 0 : fingerprint_of_[it->second];
}

std::optional<std::string> StateStore::dictionary_content(std::string_view resource) {
  std::lock_guard lock(mu_);
  auto it = dictionary_of_.find(resource);
  if (it == dictionary_of_.end()) return std::nullopt;
  Stmt get(db_, "SELECT content FROM dictionaries WHERE id = ?");
  sqlite3_bind_int64(get.s, 1, it->second);
  if (sqlite3_step(get.s) != SQLITE_ROW) return std::nullopt;  // made in a transaction not yet committed
  return std::string(get.blob(0));
}

int64_t StateStore::dictionary_for(const std::string& resource, const std::vector<std::string_view>& samples) {
  if (auto it = dictionary_of_.find(resource); it != dictionary_of_.end()) return it->second;
  if (refused_dictionaries_.count(resource)) return 0;  // its name is taken by the one left out: none
  std::string content = DictionaryCodec::dictionary_from(samples);
  Stmt ins(db_, "INSERT INTO dictionaries(resource, content) VALUES(?, ?)");
  ins.bind(1, resource);
  ins.bind_blob(2, content);
  if (sqlite3_step(ins.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  int64_t id = sqlite3_last_insert_rowid(db_);
  if (std::string why = codec_.add_dictionary(id, content); !why.empty())  // its own content: never refused
    throw Error("state store " + path_ + ": the dictionary made for " + resource + " does not load: " + why);
  fingerprint_of_[id] = DictionaryCodec::fingerprint(content);
  dictionary_of_.emplace(resource, id);
  made_.push_back(id);
  return id;
}

std::string StateStore::redaction_key() {
  std::lock_guard lock(mu_);
  {
    Stmt get(db_, "SELECT value FROM meta WHERE key = 'redaction_key'");
    if (sqlite3_step(get.s) == SQLITE_ROW) return get.text(0);
  }
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) throw Error("state store " + path_ + ": cannot draw a random redaction key");
  static constexpr char hex[] = "0123456789abcdef";
  std::string key;
  for (unsigned char c : raw) {
    key.push_back(hex[c >> 4]);
    key.push_back(hex[c & 0xf]);
  }
  Stmt put(db_, "INSERT INTO meta VALUES('redaction_key', ?)");
  put.bind(1, key);
  if (sqlite3_step(put.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  return key;
}

// Settings share the meta table with the store's own keys, under a prefix
// of their own so that no name can overwrite schema_version or the key.
std::optional<std::string> StateStore::setting(const std::string& name) {
  std::lock_guard lock(mu_);
  const std::string key = "setting:" + name;  // bound without a copy: must outlive the step
  Stmt get(db_, "SELECT value FROM meta WHERE key = ?");
  get.bind(1, key);
  if (sqlite3_step(get.s) == SQLITE_ROW) return get.text(0);
  return std::nullopt;
}

void StateStore::set_setting(const std::string& name, const std::string& value) {
  std::lock_guard lock(mu_);
  Stmt put(db_, "INSERT INTO meta VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  const std::string key = "setting:" + name;  // bound without a copy: must outlive the step
  put.bind(1, key);
  put.bind(2, value);
  if (sqlite3_step(put.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
}

std::vector<std::string> StateStore::setting_names(const std::string& prefix) {
  std::lock_guard lock(mu_);
  const std::string from = "setting:" + prefix;  // bound without a copy: must outlive the steps
  // Keys from `from` up to the first that no longer begins with it (a
  // range, so that '%' or '_' in a handler's name mean nothing).
  Stmt scan(db_, "SELECT key FROM meta WHERE key >= ? AND value != '' ORDER BY key");
  scan.bind(1, from);
  std::vector<std::string> names;
  while (sqlite3_step(scan.s) == SQLITE_ROW) {
    std::string key = scan.text(0);
    if (key.compare(0, from.size(), from) != 0) break;
    names.push_back(key.substr(std::string_view("setting:").size()));
  }
  return names;
}

bool StateStore::outbox_holds(const std::string& id, const std::string& handler) {
  std::lock_guard lock(mu_);
  return outbox_->holds(id, handler);
}

std::vector<StateStore::JournalEntry> StateStore::journal_pending() {
  std::lock_guard lock(mu_);
  std::vector<JournalEntry> out;
  for (const auto& [seq, u] : unrouted_at_) {
    JournalEntry e{seq, u.id, {}, {}};
    e.error = log_->read(u.offset, u.size, e.json);
    out.push_back(std::move(e));
  }
  return out;
}

void StateStore::journal_done(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::lock_guard lock(mu_);
  const int64_t through = routed_through_without(ids);
  if (through > routed_through_) write_outbox({}, {}, {}, through);
  forget_routed(ids, through);
}

// Every change set up to just before the oldest one still unrouted once
// `ids` are routed is routed; one row says so (a crash re-routes the few
// routed out of order above it, and the outbox drops those as known ids).
// Computed without changing anything: the caller writes it inside its
// transaction and forgets the ids only once that has committed.
int64_t StateStore::routed_through_without(const std::vector<std::string>& ids) const {
  std::vector<int64_t> leaving;
  leaving.reserve(ids.size());
  for (const auto& id : ids)
    if (auto it = unrouted_.find(id); it != unrouted_.end()) leaving.push_back(it->second);
  std::sort(leaving.begin(), leaving.end());
  // unrouted_at_ is in seq order: its first entry not leaving is the oldest
  // still waiting.
  auto gone = leaving.begin();
  for (const auto& [seq, u] : unrouted_at_) {
    while (gone != leaving.end() && *gone < seq) ++gone;
    if (gone == leaving.end() || *gone != seq) return seq - 1;
  }
  return next_seq_ - 1;
}

void StateStore::forget_routed(const std::vector<std::string>& ids, int64_t through) {
  for (const auto& id : ids) {
    auto it = unrouted_.find(id);
    if (it == unrouted_.end()) continue;
    unrouted_at_.erase(it->second);
    unrouted_.erase(it);
  }
  routed_through_ = std::max(routed_through_, through);
}

size_t StateStore::journal_size() {
  std::lock_guard lock(mu_);
  return unrouted_.size();
}

int64_t StateStore::outbox_add(const std::string& id, const std::string& handler, const std::string& route,
                               int position, std::string_view json) {
  return outbox_add_many({{id, handler, route, position, json}}).front();
}

std::vector<int64_t> StateStore::outbox_add_many(const std::vector<OutboxRow>& rows,
                                                 const std::vector<std::string>& routed) {
  if (rows.empty() && routed.empty()) return {};
  std::lock_guard lock(mu_);
  const int64_t through = routed.empty() ? routed_through_ : routed_through_without(routed);
  // The journal entries these rows route are retired in the same frame.
  std::vector<int64_t> seqs = write_outbox(rows, {}, {}, through > routed_through_ ? through : 0);
  if (!routed.empty()) forget_routed(routed, through);
  return seqs;
}

std::vector<int64_t> StateStore::outbox_settle(const std::vector<int64_t>& delivered,
                                               const std::vector<std::pair<int64_t, std::string>>& dead,
                                               const std::vector<OutboxRow>& next) {
  if (delivered.empty() && dead.empty() && next.empty()) return {};
  std::lock_guard lock(mu_);
  return write_outbox(next, delivered, dead, 0);
}

void StateStore::outbox_delivered(int64_t seq) { outbox_settle({seq}, {}, {}); }

void StateStore::outbox_dead(int64_t seq, const std::string& reason) { outbox_settle({}, {{seq, reason}}, {}); }

// One frame of the outbox (under mu_); the pending count follows it.
std::vector<int64_t> StateStore::write_outbox(const std::vector<OutboxRow>& rows, const std::vector<int64_t>& delivered,
                                              const std::vector<std::pair<int64_t, std::string>>& dead,
                                              int64_t routed_through) {
  int64_t settled = 0;
  auto seqs = outbox_->write(rows, delivered, dead, routed_through, settled);
  pending_ = outbox_->pending_count();
  return seqs;
}

void StateStore::refuse_outbox_rows_for_test(std::function<bool(std::string_view, std::string_view)> refuse) {
  std::lock_guard lock(mu_);
  outbox_->refuse_rows_for_test(std::move(refuse));
}

std::vector<StateStore::OutboxEntry> StateStore::outbox_pending(const std::string& handler, int64_t after,
                                                                size_t limit) {
  std::lock_guard lock(mu_);
  return outbox_->pending(handler, after, limit);
}

std::vector<StateStore::DeadLetter> StateStore::dead_letters() {
  std::lock_guard lock(mu_);
  return outbox_->dead_letters();
}

std::string StateStore::dead_letter_json(int64_t seq) {
  std::lock_guard lock(mu_);
  return outbox_->json_of(seq);
}

int64_t StateStore::redeliver_dead_letter(int64_t seq) {
  std::lock_guard lock(mu_);
  int64_t row = outbox_->redeliver(seq);
  pending_ = outbox_->pending_count();
  return row;
}

bool StateStore::drop_dead_letter(int64_t seq) {
  std::lock_guard lock(mu_);
  return outbox_->drop(seq);
}

StateStore::Compaction StateStore::outbox_compact(int64_t max_age_s, uint64_t max_bytes) {
  std::lock_guard lock(mu_);
  auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  Compaction c = outbox_->compact(max_age_s, max_bytes, now);
  pending_ = outbox_->pending_count();
  // SQLite holds only meta and dictionaries now; older stores' freed pages
  // (the outbox table they had) go back to the file system, and the WAL
  // stays short.
  exec("PRAGMA incremental_vacuum");
  sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  return c;
}

// Schema 4 kept the outbox in a table. Its rows go into the outbox file
// (with how far the journal is routed), then the table is dropped and the
// version written, in one transaction after the file is: a crash between
// the two converts again from the table (the file is replaced whole, so
// nothing is in it twice).
void StateStore::migrate_outbox_table() {
  bool table = false;
  {
    Stmt q(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'");
    table = sqlite3_step(q.s) == SQLITE_ROW;
  }
  if (table) {
    std::vector<OutboxLog::Imported> rows;
    {
      Stmt q(db_, "SELECT seq, id, handler, route, position, json, state, reason, created FROM outbox ORDER BY seq");
      while (sqlite3_step(q.s) == SQLITE_ROW) {
        OutboxLog::Imported r;
        r.seq = sqlite3_column_int64(q.s, 0);
        r.id = q.text(1);
        r.handler = q.text(2);
        r.route = q.text(3);
        r.position = sqlite3_column_int(q.s, 4);
        r.json = q.text(5);
        std::string state = q.text(6);
        r.state = state == "pending" ? 0 : state == "delivered" ? 1 : 2;
        r.reason = q.text(7);
        r.created = sqlite3_column_int64(q.s, 8);
        if (r.seq <= 0) continue;  // not one SQLite's AUTOINCREMENT gave
        rows.push_back(std::move(r));
      }
    }
    outbox_->replace_with(rows, routed_through_);
    spdlog::info("state store {}: {} outbox rows moved into {}", path_, rows.size(), outbox_->path());
  }
  transaction([&] {
    exec("DROP TABLE IF EXISTS outbox");
    exec(("UPDATE meta SET value = '" + std::to_string(kSchemaVersion) + "' WHERE key = 'schema_version'").c_str());
  });
}

}  // namespace kubetrail::state
