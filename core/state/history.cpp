#include "state/history.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "model/path.hpp"

namespace kubetrail::state {

namespace {

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      throw Error(std::string("history: cannot prepare a query: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(st_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  sqlite3_stmt* get() const noexcept { return st_; }
  void text(int i, std::string_view v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void integer(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }

 private:
  sqlite3_stmt* st_ = nullptr;
};

std::string column_text(sqlite3_stmt* st, int i) {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st, i))) : std::string();
}

bool any_overlaps(const std::vector<model::PathPattern>& patterns, const std::string& paths) {
  size_t start = 0;
  while (start < paths.size()) {
    size_t end = std::min(paths.find('\n', start), paths.size());
    try {
      model::ParsedPath p(std::string_view(paths).substr(start, end - start));
      for (const auto& pat : patterns)
        if (pat.overlaps(p.segments())) return true;
    } catch (const Error&) {  // a path kubetrail wrote always parses; a slip costs a match, never the query
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

std::filesystem::path History::path_for(const std::filesystem::path& state_path) {
  return std::filesystem::path(state_path.string() + "-history");
}

History::History(const std::filesystem::path& path, bool read_only) : path_(path) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error("history " + path.string() + ": cannot open: " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    if (!read_only) {
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=NORMAL");
      exec(
          "CREATE TABLE IF NOT EXISTS history(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
          " time_ms INTEGER NOT NULL, cluster TEXT NOT NULL, resource TEXT NOT NULL, kind TEXT NOT NULL,"
          " namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, type TEXT NOT NULL,"
          " actor TEXT NOT NULL, paths TEXT NOT NULL, json TEXT NOT NULL);"
          "CREATE INDEX IF NOT EXISTS history_time ON history(time_ms);"
          "CREATE INDEX IF NOT EXISTS history_object ON history(namespace, name, time_ms);");
    }
    if (!read_only) {  // the size cap's running total (a reader has no use for it, and it reads every row)
      Statement st(db_, "SELECT COALESCE(SUM(length(json)), 0) FROM history");
      if (sqlite3_step(st.get()) == SQLITE_ROW) bytes_ = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 0));
    }
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

History::~History() { sqlite3_close(db_); }

void History::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error("history " + path_.string() + ": " + why);
  }
}

void History::append(const std::vector<model::ChangeSet>& batch) {
  if (batch.empty()) return;
  std::lock_guard lock(mu_);
  exec("BEGIN IMMEDIATE");
  try {
    Statement st(db_,
                 "INSERT OR IGNORE INTO history(id, time_ms, cluster, resource, kind, namespace, name, uid, type,"
                 " actor, paths, json) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    for (const auto& cs : batch) {
      std::string paths;
      for (const auto& c : cs.changes) paths += (paths.empty() ? "" : "\n") + c.path;
      std::string json = cs.to_json();
      sqlite3_reset(st.get());
      st.text(1, cs.id);
      st.integer(2, rfc3339_to_ms(cs.observed_at).value_or(0));
      st.text(3, cs.cluster);
      st.text(4, cs.resource.qualified_name());
      st.text(5, cs.resource.kind);
      st.text(6, cs.object_namespace);
      st.text(7, cs.name);
      st.text(8, cs.uid);
      st.text(9, model::to_string(cs.type));
      st.text(10, cs.actor ? cs.actor->manager : "");
      st.text(11, paths);
      st.text(12, json);
      if (sqlite3_step(st.get()) != SQLITE_DONE)
        throw Error("history " + path_.string() + ": cannot insert: " + sqlite3_errmsg(db_));
      if (sqlite3_changes(db_) > 0) bytes_ += json.size();
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<History::Row> History::query(const Filter& f) {
  std::vector<model::PathPattern> patterns;
  for (const auto& p : f.paths) patterns.push_back(model::PathPattern::parse(p));  // throws Error naming it
  std::string sql =
      "SELECT seq, time_ms, paths, json FROM history WHERE time_ms >= ?1 AND time_ms < ?2"
      " AND (?3 = '' OR namespace = ?3) AND (?4 = '' OR name = ?4) AND (?5 = '' OR actor = ?5)"
      " AND (?6 = '' OR type = ?6)"
      " AND (?7 = '' OR resource = ?7 OR resource LIKE ?7 || '.%' OR lower(kind) = lower(?7))"
      " AND (?8 = 0 OR seq < ?8) AND seq > ?9";
  sql += f.oldest_first ? " ORDER BY time_ms, seq" : " ORDER BY time_ms DESC, seq DESC";
  std::lock_guard lock(mu_);
  Statement st(db_, sql.c_str());
  st.integer(1, f.since_ms);
  st.integer(2, f.until_ms);
  st.text(3, f.namespace_);
  st.text(4, f.name);
  st.text(5, f.actor);
  st.text(6, f.type);
  st.text(7, f.resource);
  st.integer(8, f.before_seq);
  st.integer(9, f.after_seq);
  std::vector<Row> out;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    if (!patterns.empty() && !any_overlaps(patterns, column_text(st.get(), 2))) continue;
    out.push_back({sqlite3_column_int64(st.get(), 0), sqlite3_column_int64(st.get(), 1), column_text(st.get(), 3)});
    if (f.limit && out.size() >= f.limit) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw Error("history " + path_.string() + ": " + sqlite3_errmsg(db_));
  return out;
}

int64_t History::last_seq() {
  std::lock_guard lock(mu_);
  Statement st(db_, "SELECT COALESCE(MAX(seq), 0) FROM history");
  return sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : 0;
}

size_t History::compact(int64_t max_age_ms, uint64_t max_bytes, int64_t now_ms) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  auto remove = [&](const char* sql, int64_t arg) {
    Statement sum(
        db_, (std::string("SELECT COALESCE(SUM(length(json)), 0), COUNT(*) FROM history WHERE seq IN (") + sql + ")")
                 .c_str());
    sum.integer(1, arg);
    uint64_t bytes = 0;
    if (sqlite3_step(sum.get()) == SQLITE_ROW) {
      bytes = static_cast<uint64_t>(sqlite3_column_int64(sum.get(), 0));
      removed += static_cast<size_t>(sqlite3_column_int64(sum.get(), 1));
    }
    Statement del(db_, (std::string("DELETE FROM history WHERE seq IN (") + sql + ")").c_str());
    del.integer(1, arg);
    if (sqlite3_step(del.get()) != SQLITE_DONE) throw Error("history " + path_.string() + ": " + sqlite3_errmsg(db_));
    bytes_ -= std::min(bytes_, bytes);
  };
  exec("BEGIN IMMEDIATE");
  try {
    remove("SELECT seq FROM history WHERE time_ms < ?1", now_ms - max_age_ms);
    // Oldest first until under the cap, in steps sized by the rows' mean
    // size (at most a thousand rows a step).
    while (bytes_ > max_bytes) {
      Statement count(db_, "SELECT COUNT(*) FROM history");
      int64_t rows = sqlite3_step(count.get()) == SQLITE_ROW ? sqlite3_column_int64(count.get(), 0) : 0;
      if (rows == 0) break;
      const uint64_t mean = std::max<uint64_t>(1, bytes_ / static_cast<uint64_t>(rows));
      const int64_t step = static_cast<int64_t>(std::min<uint64_t>(1000, (bytes_ - max_bytes) / mean + 1));
      size_t before = removed;
      remove("SELECT seq FROM history ORDER BY time_ms, seq LIMIT ?1", step);
      if (removed == before) break;
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  return removed;
}

}  // namespace kubetrail::state
