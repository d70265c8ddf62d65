#include "state/state_store.hpp"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>

#include "common/error.hpp"

namespace kubetrail::state {

namespace {

constexpr int kSchemaVersion = 1;
#define OBJECTS_COLUMNS                                                                                         \
  "(resource TEXT NOT NULL, key TEXT NOT NULL, uid TEXT NOT NULL, resource_version TEXT NOT NULL, object TEXT " \
  "NOT NULL, UNIQUE(resource, key))"

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
  void bind(int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);  // bound only while Stmt lives
  }
  std::string text(int i) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
  }
};

// Opens and checks; returns the reason it cannot be used, or "".
std::string try_open(const std::string& path, sqlite3** out) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return why;
  }
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
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
      // Added in place (schema 1 stays readable): a store from before has
      // no journal, and nothing in it is lost by starting with an empty one.
      "CREATE TABLE IF NOT EXISTS journal(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
      " json TEXT NOT NULL);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "cannot create tables";
    sqlite3_free(err);
    sqlite3_close(db);
    return why;
  }
  {
    Stmt get(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (sqlite3_step(get.s) == SQLITE_ROW) {
      if (get.text(0) != std::to_string(kSchemaVersion)) {
        std::string v = get.text(0);
        sqlite3_close(db);
        return "state schema version " + v + " is not " + std::to_string(kSchemaVersion) +
               " (written by another kubetrail)";
      }
    } else {
      sqlite3_exec(db, "INSERT INTO meta VALUES('schema_version', '1')", nullptr, nullptr, nullptr);
    }
  }
  if (std::string why = migrate_objects(db); !why.empty()) {
    sqlite3_close(db);
    return why;
  }
  *out = db;
  return {};
}

}  // namespace

std::unique_ptr<StateStore> StateStore::open(const std::string& path, bool reset) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  std::string why = try_open(path, &db);
  if (!why.empty() && reset) {
    auto stamp =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string aside = path + ".corrupt-" + std::to_string(stamp);
    std::filesystem::rename(path, aside, ec);
    for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
    why = try_open(path, &db);
  }
  if (!why.empty())
    throw Error("state store " + path + " cannot be used: " + why +
                " (move it away, or start with --reset-state to set it aside and start fresh)");
  return std::unique_ptr<StateStore>(new StateStore(db, path));
}

StateStore::StateStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {
  Stmt q(db_, "SELECT count(*) FROM outbox WHERE state = 'pending'");
  if (sqlite3_step(q.s) == SQLITE_ROW) pending_ = sqlite3_column_int64(q.s, 0);
}

StateStore::~StateStore() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
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

std::optional<StateStore::Checkpoint> StateStore::load(const std::string& resource) {
  std::lock_guard lock(mu_);
  Stmt rv(db_, "SELECT resource_version FROM resources WHERE resource = ?");
  rv.bind(1, resource);
  if (sqlite3_step(rv.s) != SQLITE_ROW) return std::nullopt;
  Checkpoint cp;
  cp.resource_version = rv.text(0);
  Stmt objs(db_, "SELECT key, uid, resource_version, object FROM objects WHERE resource = ?");
  objs.bind(1, resource);
  while (sqlite3_step(objs.s) == SQLITE_ROW) {
    model::StoredObject o;
    o.uid = objs.text(1);
    o.resource_version = objs.text(2);
    o.json = objs.text(3);
    cp.objects.emplace(objs.text(0), std::move(o));
  }
  return cp;
}

void StateStore::save(const std::string& resource,
                      const std::vector<std::pair<std::string, const model::StoredObject*>>& upserts,
                      const std::vector<std::string>& deletes, const std::string& resource_version,
                      const std::vector<JournalEntry>& journal) {
  std::lock_guard lock(mu_);
  transaction([&] {
    Stmt jr(cache_, db_, "INSERT OR IGNORE INTO journal(id, json) VALUES(?, ?)");
    for (const auto& e : journal) {
      jr.bind(1, e.id);
      jr.bind(2, e.json);
      if (sqlite3_step(jr.s) != SQLITE_DONE) throw Error(std::string("state store: ") + sqlite3_errmsg(db_));
      sqlite3_reset(jr.s);
    }
    // An upsert, not INSERT OR REPLACE: REPLACE deletes the row and inserts
    // it under a new rowid, which rewrites the index page too.
    Stmt up(cache_, db_,
            "INSERT INTO objects(resource, key, uid, resource_version, object) VALUES(?,?,?,?,?)"
            " ON CONFLICT(resource, key) DO UPDATE SET uid = excluded.uid,"
            " resource_version = excluded.resource_version, object = excluded.object");
    for (const auto& [key, obj] : upserts) {
      up.bind(1, resource);
      up.bind(2, key);
      up.bind(3, obj->uid);
      up.bind(4, obj->resource_version);
      up.bind(5, obj->json);
      if (sqlite3_step(up.s) != SQLITE_DONE) throw Error(std::string("state store: ") + sqlite3_errmsg(db_));
      sqlite3_reset(up.s);
    }
    Stmt del(cache_, db_, "DELETE FROM objects WHERE resource = ? AND key = ?");
    for (const auto& key : deletes) {
      del.bind(1, resource);
      del.bind(2, key);
      if (sqlite3_step(del.s) != SQLITE_DONE) throw Error(std::string("state store: ") + sqlite3_errmsg(db_));
      sqlite3_reset(del.s);
    }
    if (!resource_version.empty() || !known_.count(resource)) {
      Stmt rv(cache_, db_, "INSERT OR REPLACE INTO resources(resource, resource_version) VALUES(?, ?)");
      rv.bind(1, resource);
      rv.bind(2, resource_version);
      if (sqlite3_step(rv.s) != SQLITE_DONE) throw Error(std::string("state store: ") + sqlite3_errmsg(db_));
    }
  });
  known_.insert(resource);
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
  Stmt q(db_, "SELECT seq, id, json FROM journal ORDER BY seq");
  std::vector<JournalEntry> out;
  while (sqlite3_step(q.s) == SQLITE_ROW) out.push_back({sqlite3_column_int64(q.s, 0), q.text(1), q.text(2)});
  return out;
}

void StateStore::journal_done(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::lock_guard lock(mu_);
  transaction([&] {
    Stmt del(cache_, db_, "DELETE FROM journal WHERE id = ?");
    for (const auto& id : ids) {
      del.bind(1, id);
      if (sqlite3_step(del.s) != SQLITE_DONE) throw Error("state store " + path_ + ": " + sqlite3_errmsg(db_));
      sqlite3_reset(del.s);
    }
  });
}

size_t StateStore::journal_size() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT count(*) FROM journal");
  return sqlite3_step(q.s) == SQLITE_ROW ? static_cast<size_t>(sqlite3_column_int64(q.s, 0)) : 0;
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
