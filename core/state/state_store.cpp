#include "state/state_store.hpp"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>

#include "common/error.hpp"

namespace kubetrail::state {

namespace {

// 2: objects.codec and the dictionaries table (compressed checkpoint rows).
// A schema 1 store is converted at open; a kubetrail that knows only 1
// refuses a schema 2 store with a message rather than read blobs as JSON.
constexpr int kSchemaVersion = 2;
// codec: 0 = `object` is the JSON text; N > 0 = a zstd frame compressed
// against dictionaries.id N (state/row_codec.hpp).
#define OBJECTS_COLUMNS                                                                                         \
  "(resource TEXT NOT NULL, key TEXT NOT NULL, uid TEXT NOT NULL, resource_version TEXT NOT NULL, object TEXT " \
  "NOT NULL, codec INTEGER NOT NULL DEFAULT 0, UNIQUE(resource, key))"

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
  std::string sql = "BEGIN IMMEDIATE;";
  if (!exists("SELECT 1 FROM pragma_table_info('objects') WHERE name = 'codec'"))
    sql += "ALTER TABLE objects ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;";
  if (exists("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'"))
    sql +=
        "INSERT INTO log(seq, kind, resource, key, body) SELECT seq, 2, '', id, json FROM journal ORDER BY seq;"
        "DROP TABLE journal;";
  sql += "UPDATE meta SET value = '" + std::to_string(kSchemaVersion) + "' WHERE key = 'schema_version'; COMMIT;";
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = std::string("cannot convert the store to schema 2: ") + (err ? err : "error");
    sqlite3_free(err);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return why;
  }
  return {};
}

struct Stmt {
  sqlite3_stmt* s = nullptr;
  bool cached = false;
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
      throw Error(std::string("state store: cannot prepare statement: ") + sqlite3_errmsg(db));
  }
  // A statement of the hot path, prepared once per store and kept (preparing
  // cost more than the insert itself: state_bench).
  Stmt(std::map<const char*, sqlite3_stmt*>& cache, sqlite3* db, const char* sql) : cached(true) {
    auto it = cache.find(sql);
    if (it == cache.end()) {
      if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
        throw Error(std::string("state store: cannot prepare statement: ") + sqlite3_errmsg(db));
      it = cache.emplace(sql, s).first;
    }
    s = it->second;
  }
  ~Stmt() {
    if (!cached) {
      sqlite3_finalize(s);
      return;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  // Bound only while the Stmt lives. An empty view is "", never NULL (a
  // null data pointer would bind NULL).
  void bind(int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data() ? v.data() : "", static_cast<int>(v.size()), SQLITE_STATIC);
  }
  void bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob(s, i, v.data() ? v.data() : "", static_cast<int>(v.size()), SQLITE_STATIC);
  }
  // An object row's body and codec, into columns i and i + 1: a zstd frame
  // is a blob, JSON text (codec 0) is text.
  void bind_object(int i, std::string_view body, int64_t codec) {
    if (codec)
      bind_blob(i, body);
    else
      bind(i, body);
    sqlite3_bind_int64(s, i + 1, codec);
  }
  std::string_view blob(int i) {
    auto p = static_cast<const char*>(sqlite3_column_blob(s, i));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string_view();
  }
  std::string text(int i) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
  }
};

// A row's body column as text (codec 0) or decompressed by `codec`: "" or
// why it cannot be read. The two readers of stored bodies, load() and
// journal_pending(), go through here.
std::string decode(RowCodec& codec, Stmt& q, int body, int codec_column, std::string& out) {
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
      // Checkpoint rows are whole objects (~2.5 KB a Pod): a page cache and a
      // memory map large enough that an upsert does not read its B-tree
      // pages back with a system call each (state_bench: 5x per event).
      "PRAGMA cache_size=-65536;"
      "PRAGMA mmap_size=1073741824;"
      // Checkpoint the WAL every ~80 MB rather than every 4 MB: the pages
      // every commit touches (the journal's tail, interior B-tree pages) are
      // copied into the database once per checkpoint, not once per few
      // commits (state_bench: -25% per watch event). A WAL grown past the
      // limit by one large transaction is cut back after its checkpoint.
      "PRAGMA wal_autocheckpoint=20000;"
      "PRAGMA journal_size_limit=134217728;"
      "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS resources(resource TEXT PRIMARY KEY, resource_version TEXT NOT NULL);"
      // A rowid table, not WITHOUT ROWID: there a row lives in an index
      // B-tree whose cells hold at most ~1 KB, so every Pod spilled into an
      // overflow chain and each upsert rewrote three or four pages (freelist
      // included) instead of one leaf (state_bench: 2x per event). The
      // unique index holds only the short key, and an upsert of an existing
      // key leaves it untouched.
      "CREATE TABLE IF NOT EXISTS objects" OBJECTS_COLUMNS
      ";"
      "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,"
      " handler TEXT NOT NULL, route TEXT NOT NULL, position INTEGER NOT NULL, json TEXT NOT NULL,"
      " state TEXT NOT NULL DEFAULT 'pending', reason TEXT, created INTEGER NOT NULL, UNIQUE(id, handler));"
      "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(handler, state, seq);"
      // The log (schema 2): what save() appends, in the order it happened -
      // kind 0 an object's new state, 1 its deletion (resource, key, uid,
      // resource_version, body, codec as in `objects`), 2 a change set not
      // yet routed (key = its id, body = its JSON). Appending is what makes
      // a watch event cheap: its rows land on the log's last page, where an
      // update in place of `objects` dirtied one random page per event
      // (state_bench). fold() moves object rows into `objects` in bulk and
      // drops change sets up to meta.routed_through. seq is given by the
      // store (never reused: routed_through refers to it), so no
      // AUTOINCREMENT and its extra page per commit.
      "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, resource TEXT NOT NULL,"
      " key TEXT NOT NULL, uid TEXT NOT NULL DEFAULT '', resource_version TEXT NOT NULL DEFAULT '', body BLOB,"
      " codec INTEGER NOT NULL DEFAULT 0);"
      // One compression dictionary per resource (state/row_codec.hpp),
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
    version = std::to_string(kSchemaVersion);
  }
  if (version != std::to_string(kSchemaVersion)) {
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

std::unique_ptr<StateStore> StateStore::open(const std::string& path, bool reset, int64_t fold_rows) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  bool busy = false;
  std::string why = try_open(path, &db, busy);
  if (busy) throw Error("state store " + path + " cannot be used: " + why);  // never set aside: it is someone's
  if (!why.empty() && reset) {
    auto stamp =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string aside = path + ".corrupt-" + std::to_string(stamp);
    std::filesystem::rename(path, aside, ec);
    for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
    why = try_open(path, &db, busy);
  }
  if (!why.empty())
    throw Error("state store " + path + " cannot be used: " + why +
                " (move it away, or start with --reset-state to set it aside and start fresh)");
  return std::unique_ptr<StateStore>(new StateStore(db, path, fold_rows));
}

namespace {
enum LogKind : int { kObject = 0, kDeleted = 1, kChangeSet = 2 };
// A save of at least this many objects (a list page) writes them into
// `objects` directly: the log would only hold them until the next fold.
constexpr size_t kDirectRows = 256;
}  // namespace

// The log is folded into `objects` once it holds fold_rows rows (kFoldRows):
// often enough that it stays small (start-up reads it), rarely enough that
// one fold updates each page of `objects` for many events at once.
StateStore::StateStore(sqlite3* db, std::string path, int64_t fold_rows)
    : fold_rows_(fold_rows), db_(db), path_(std::move(path)) {
  // A store that cannot be started (a tampered meta row, a failed fold)
  // throws from here, where no destructor runs: close the connection first
  // (LeakSanitizer found the leak).
  try {
    start();
  } catch (...) {
    close();
    throw;
  }
}

void StateStore::start() {
  Stmt q(db_, "SELECT count(*) FROM outbox WHERE state = 'pending'");
  if (sqlite3_step(q.s) == SQLITE_ROW) pending_ = sqlite3_column_int64(q.s, 0);
  Stmt dicts(db_, "SELECT id, resource, content FROM dictionaries");
  while (sqlite3_step(dicts.s) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(dicts.s, 0);
    codec_.add_dictionary(id, dicts.blob(2));
    dictionary_of_.emplace(dicts.text(1), id);
  }
  Stmt routed(db_, "SELECT value FROM meta WHERE key = 'routed_through'");
  if (sqlite3_step(routed.s) == SQLITE_ROW) {
    // A value from the file (one a user points at): a number, or the store
    // cannot be trusted to know what was routed.
    std::string v = routed.text(0);
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), routed_through_);
    if (ec != std::errc() || end != v.data() + v.size() || routed_through_ < 0)
      throw Error("state store " + path_ + ": meta routed_through is \"" + v.substr(0, 40) +
                  "\", not a sequence number (move it away, or start with --reset-state)");
  }
  Stmt last(db_, "SELECT COALESCE(max(seq), 0), count(*) FROM log");
  if (sqlite3_step(last.s) == SQLITE_ROW) {
    next_seq_ = std::max<int64_t>(sqlite3_column_int64(last.s, 0), routed_through_) + 1;
    log_rows_ = sqlite3_column_int64(last.s, 1);
  }
  Stmt unrouted(db_, "SELECT seq, key FROM log WHERE kind = 2 AND seq > ? ORDER BY seq");
  sqlite3_bind_int64(unrouted.s, 1, routed_through_);
  while (sqlite3_step(unrouted.s) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(unrouted.s, 0);
    unrouted_.emplace(unrouted.text(1), seq);
    unrouted_seqs_.insert(seq);
  }
  // Start from a short log: load() reads what is left of it per resource.
  std::lock_guard lock(mu_);
  if (log_rows_ > 0) transaction([&] { fold(); });
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
  try {
    body();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
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

std::optional<StateStore::Checkpoint> StateStore::load(const std::string& resource) {
  std::lock_guard lock(mu_);
  Stmt rv(db_, "SELECT resource_version FROM resources WHERE resource = ?");
  rv.bind(1, resource);
  if (sqlite3_step(rv.s) != SQLITE_ROW) return std::nullopt;
  Checkpoint cp;
  cp.resource_version = rv.text(0);
  Stmt objs(db_, "SELECT key, uid, resource_version, object, codec FROM objects WHERE resource = ?");
  objs.bind(1, resource);
  while (sqlite3_step(objs.s) == SQLITE_ROW) {
    model::StoredObject o;
    o.uid = objs.text(1);
    o.resource_version = objs.text(2);
    if (std::string why = decode(codec_, objs, 3, 4, o.json); !why.empty()) {
      cp.unreadable.emplace_back(objs.text(0), std::move(why));
      continue;
    }
    cp.objects.emplace(objs.text(0), std::move(o));
  }
  // What the log holds of this resource is newer: applied in order.
  Stmt log(db_,
           "SELECT kind, key, uid, resource_version, body, codec FROM log WHERE resource = ? AND kind IN (0, 1)"
           " ORDER BY seq");
  log.bind(1, resource);
  while (sqlite3_step(log.s) == SQLITE_ROW) {
    std::string key = log.text(1);
    if (sqlite3_column_int(log.s, 0) == kDeleted) {
      cp.objects.erase(key);
      continue;
    }
    model::StoredObject o;
    o.uid = log.text(2);
    o.resource_version = log.text(3);
    if (std::string why = decode(codec_, log, 4, 5, o.json); !why.empty()) {
      cp.objects.erase(key);
      cp.unreadable.emplace_back(std::move(key), std::move(why));
      continue;
    }
    cp.objects.insert_or_assign(std::move(key), std::move(o));
  }
  return cp;
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

void StateStore::fold() {
  Stmt rows(
      db_, "SELECT kind, resource, key, uid, resource_version, body, codec FROM log WHERE kind IN (0, 1) ORDER BY seq");
  while (sqlite3_step(rows.s) == SQLITE_ROW) {
    if (sqlite3_column_int(rows.s, 0) == kDeleted) {
      remove_object(rows.text(1), rows.text(2));
      continue;
    }
    int64_t codec = sqlite3_column_int64(rows.s, 6);
    put_object(rows.text(1), rows.text(2), rows.text(3), rows.text(4), codec ? rows.blob(5) : rows.text(5), codec);
  }
  Stmt drop(db_, "DELETE FROM log WHERE kind IN (0, 1) OR seq <= ?");
  sqlite3_bind_int64(drop.s, 1, routed_through_);
  step(drop.s);
  Stmt left(db_, "SELECT count(*) FROM log");
  log_rows_ = sqlite3_step(left.s) == SQLITE_ROW ? sqlite3_column_int64(left.s, 0) : 0;
}

void StateStore::save(const std::string& resource,
                      const std::vector<std::pair<std::string, const model::StoredObject*>>& upserts,
                      const std::vector<std::string>& deletes, const std::string& resource_version,
                      const std::vector<JournalEntry>& journal) {
  std::lock_guard lock(mu_);
  int64_t made = 0;  // a dictionary made in this transaction: forgotten again if it rolls back
  int64_t seq = next_seq_, log_rows = log_rows_;
  std::vector<std::pair<std::string, int64_t>> journaled;
  try {
    transaction([&] {
      int64_t dictionary = 0;  // 0: none yet (nothing to make one of)
      if (!upserts.empty()) {
        size_t before = dictionary_of_.size();
        dictionary = dictionary_for(resource, upserts);
        if (dictionary_of_.size() != before) made = dictionary;
      } else if (auto it = dictionary_of_.find(resource); it != dictionary_of_.end()) {
        dictionary = it->second;
      }
      // Compressed against the resource's dictionary unless that does not
      // make it smaller (or there is none yet): a body and its codec.
      auto packed = [&](std::string_view text) -> std::pair<std::string_view, int64_t> {
        if (!dictionary) return {text, 0};
        std::string_view frame = codec_.compress(dictionary, text);
        return frame.size() < text.size() ? std::pair{frame, dictionary} : std::pair{text, int64_t{0}};
      };
      Stmt row(cache_, db_,
               "INSERT INTO log(seq, kind, resource, key, uid, resource_version, body, codec) VALUES(?,?,?,?,?,?,?,?)");
      auto append = [&](LogKind kind, std::string_view key, std::string_view uid, std::string_view rv,
                        std::string_view body, int64_t codec) {
        sqlite3_bind_int64(row.s, 1, seq++);
        sqlite3_bind_int(row.s, 2, kind);
        row.bind(3, kind == kChangeSet ? std::string_view() : std::string_view(resource));
        row.bind(4, key);
        row.bind(5, uid);
        row.bind(6, rv);
        row.bind_object(7, body, codec);
        step(row.s);
        ++log_rows;
      };
      // A change set already waiting to be routed (the same transition
      // computed again, e.g. by a catch-up after a crash) is kept once.
      for (const auto& e : journal) {
        if (unrouted_.count(e.id)) continue;
        if (std::any_of(journaled.begin(), journaled.end(), [&](const auto& j) { return j.first == e.id; })) continue;
        journaled.emplace_back(e.id, seq);
        auto [body, codec] = packed(e.json);  // a change set names what its object holds: the dictionary fits
        append(kChangeSet, e.id, {}, {}, body, codec);
      }
      // A list page goes straight into `objects`, after the log's older
      // object rows (which it may overwrite); a few watch events are
      // appended to the log.
      const bool direct = upserts.size() + deletes.size() >= kDirectRows;
      if (direct && log_rows > static_cast<int64_t>(journaled.size())) {
        fold();  // keeps the change sets just appended (not routed)
        log_rows = log_rows_;
      }
      for (const auto& [key, obj] : upserts) {
        auto [body, codec] = packed(obj->json);
        if (direct)
          put_object(resource, key, obj->uid, obj->resource_version, body, codec);
        else
          append(kObject, key, obj->uid, obj->resource_version, body, codec);
      }
      for (const auto& key : deletes) {
        if (direct)
          remove_object(resource, key);
        else
          append(kDeleted, key, {}, {}, {}, 0);
      }
      if (!resource_version.empty() || !known_.count(resource)) {
        Stmt rv(cache_, db_, "INSERT OR REPLACE INTO resources(resource, resource_version) VALUES(?, ?)");
        rv.bind(1, resource);
        rv.bind(2, resource_version);
        step(rv.s);
      }
      if (log_rows >= fold_rows_) {
        fold();
        log_rows = log_rows_;
      }
    });
  } catch (...) {
    if (made) {
      codec_.remove_dictionary(made);
      dictionary_of_.erase(resource);
    }
    Stmt left(db_, "SELECT count(*) FROM log");  // a fold inside may have changed the count before rolling back
    log_rows_ = sqlite3_step(left.s) == SQLITE_ROW ? sqlite3_column_int64(left.s, 0) : log_rows_;
    throw;
  }
  next_seq_ = seq;
  log_rows_ = log_rows;
  for (auto& [id, at] : journaled) {
    unrouted_seqs_.insert(at);
    unrouted_.emplace(std::move(id), at);
  }
  known_.insert(resource);
}

int64_t StateStore::dictionary_for(const std::string& resource,
                                   const std::vector<std::pair<std::string, const model::StoredObject*>>& upserts) {
  if (auto it = dictionary_of_.find(resource); it != dictionary_of_.end()) return it->second;
  std::vector<std::string_view> samples;
  for (const auto& [key, obj] : upserts) samples.push_back(obj->json);
  std::string content = RowCodec::dictionary_from(samples);
  Stmt ins(db_, "INSERT INTO dictionaries(resource, content) VALUES(?, ?)");
  ins.bind(1, resource);
  ins.bind_blob(2, content);
  if (sqlite3_step(ins.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  int64_t id = sqlite3_last_insert_rowid(db_);
  codec_.add_dictionary(id, content);
  dictionary_of_.emplace(resource, id);
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

std::vector<StateStore::JournalEntry> StateStore::journal_pending() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT seq, key, body, codec FROM log WHERE kind = 2 AND seq > ? ORDER BY seq");
  sqlite3_bind_int64(q.s, 1, routed_through_);
  std::vector<JournalEntry> out;
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(q.s, 0);
    if (!unrouted_seqs_.count(seq)) continue;
    JournalEntry e{seq, q.text(1), {}, {}};
    e.error = decode(codec_, q, 2, 3, e.json);
    out.push_back(std::move(e));
  }
  return out;
}

void StateStore::journal_done(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::lock_guard lock(mu_);
  for (const auto& id : ids) {
    auto it = unrouted_.find(id);
    if (it == unrouted_.end()) continue;
    unrouted_seqs_.erase(it->second);
    unrouted_.erase(it);
  }
  // Every change set up to just before the oldest one still unrouted is
  // routed; one row says so (a crash re-routes the few routed out of order
  // above it, and the outbox drops those as known ids).
  int64_t through = unrouted_seqs_.empty() ? next_seq_ - 1 : *unrouted_seqs_.begin() - 1;
  if (through <= routed_through_) return;
  Stmt put(cache_, db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('routed_through', ?)");
  std::string value = std::to_string(through);
  put.bind(1, value);
  step(put.s);
  routed_through_ = through;
}

size_t StateStore::journal_size() {
  std::lock_guard lock(mu_);
  return unrouted_.size();
}

int64_t StateStore::outbox_add(const std::string& id, const std::string& handler, const std::string& route,
                               int position, std::string_view json) {
  std::lock_guard lock(mu_);
  Stmt ins(cache_, db_,
           "INSERT OR IGNORE INTO outbox(id, handler, route, position, json, created) "
           "VALUES(?, ?, ?, ?, ?, strftime('%s','now'))");
  ins.bind(1, id);
  ins.bind(2, handler);
  ins.bind(3, route);
  sqlite3_bind_int(ins.s, 4, position);
  ins.bind(5, json);
  if (sqlite3_step(ins.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  if (sqlite3_changes(db_) != 1) return 0;
  ++pending_;
  return sqlite3_last_insert_rowid(db_);
}

void StateStore::outbox_delivered(int64_t seq) {
  std::lock_guard lock(mu_);
  Stmt up(cache_, db_, "UPDATE outbox SET state = 'delivered', json = '' WHERE seq = ? AND state = 'pending'");
  sqlite3_bind_int64(up.s, 1, seq);
  if (sqlite3_step(up.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  if (sqlite3_changes(db_) == 1) --pending_;
}

void StateStore::outbox_dead(int64_t seq, const std::string& reason) {
  std::lock_guard lock(mu_);
  Stmt up(cache_, db_, "UPDATE outbox SET state = 'dead', reason = ? WHERE seq = ? AND state = 'pending'");
  up.bind(1, reason);
  sqlite3_bind_int64(up.s, 2, seq);
  if (sqlite3_step(up.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
  if (sqlite3_changes(db_) == 1) --pending_;
}

std::vector<StateStore::OutboxEntry> StateStore::outbox_pending(const std::string& handler, int64_t after,
                                                                size_t limit) {
  std::lock_guard lock(mu_);
  Stmt q(db_,
         "SELECT seq, id, handler, route, position, json FROM outbox "
         "WHERE handler = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?");
  q.bind(1, handler);
  sqlite3_bind_int64(q.s, 2, after);
  sqlite3_bind_int64(q.s, 3, static_cast<int64_t>(limit));
  std::vector<OutboxEntry> out;
  while (sqlite3_step(q.s) == SQLITE_ROW)
    out.push_back(
        {sqlite3_column_int64(q.s, 0), q.text(1), q.text(2), q.text(3), sqlite3_column_int(q.s, 4), q.text(5)});
  return out;
}

std::vector<StateStore::DeadLetter> StateStore::dead_letters() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT id, handler, reason FROM outbox WHERE state = 'dead' ORDER BY seq");
  std::vector<DeadLetter> out;
  while (sqlite3_step(q.s) == SQLITE_ROW) out.push_back({q.text(0), q.text(1), q.text(2)});
  return out;
}

StateStore::Compaction StateStore::outbox_compact(int64_t max_age_s, uint64_t max_bytes) {
  std::lock_guard lock(mu_);
  Compaction c;
  // Row size as SQLite stores it, near enough: the texts plus a fixed
  // overhead for the integers and the row header.
  constexpr const char* kRowBytes =
      "(length(json) + length(id) + length(handler) + length(route) + COALESCE(length(reason), 0) + 40)";
  transaction([&] {
    Stmt old(db_, "DELETE FROM outbox WHERE state IN ('delivered', 'dead') AND created < strftime('%s','now') - ?");
    sqlite3_bind_int64(old.s, 1, max_age_s);
    if (sqlite3_step(old.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
    c.removed_by_age = static_cast<size_t>(sqlite3_changes(db_));
    Stmt total(db_, (std::string("SELECT COALESCE(SUM(") + kRowBytes + "), 0) FROM outbox").c_str());
    c.bytes = sqlite3_step(total.s) == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(total.s, 0)) : 0;
    // Over the cap: the oldest delivered rows go first (they only remember
    // ids), then the oldest dead letters. Pending rows never: they are
    // changes not yet delivered, and dropping them would lose them.
    for (const char* state : {"delivered", "dead"}) {
      if (c.bytes <= max_bytes) break;
      uint64_t excess = c.bytes - max_bytes, freed = 0;
      int64_t cutoff = -1;
      Stmt scan(db_, (std::string("SELECT seq, ") + kRowBytes + " FROM outbox WHERE state = ? ORDER BY seq").c_str());
      scan.bind(1, state);
      while (freed < excess && sqlite3_step(scan.s) == SQLITE_ROW) {
        cutoff = sqlite3_column_int64(scan.s, 0);
        freed += static_cast<uint64_t>(sqlite3_column_int64(scan.s, 1));
      }
      if (cutoff < 0) continue;
      Stmt del(db_, "DELETE FROM outbox WHERE state = ? AND seq <= ?");
      del.bind(1, state);
      sqlite3_bind_int64(del.s, 2, cutoff);
      if (sqlite3_step(del.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
      (std::string_view(state) == "dead" ? c.dead_removed_by_size : c.delivered_removed_by_size) =
          static_cast<size_t>(sqlite3_changes(db_));
      c.bytes -= std::min(c.bytes, freed);
    }
  });
  // Hand the freed pages back to the file system (auto_vacuum is
  // incremental in stores created since), and keep the WAL short.
  exec("PRAGMA incremental_vacuum");
  sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  return c;
}

}  // namespace kubetrail::state
