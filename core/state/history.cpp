#include "state/history.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>

#include "common/clock.hpp"
#include "common/dictionary_codec.hpp"
#include "common/error.hpp"
#include "model/path.hpp"
#include "state/sqlite_statement.hpp"

namespace kubetrail::state {

namespace {

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

// Whether `name` is r.qualified_name(), without making it.
bool has_qualified_name(const model::ResourceType& r, std::string_view name) {
  if (r.group.empty()) return name == r.resource;
  return name.size() == r.resource.size() + 1 + r.group.size() && name.starts_with(r.resource) &&
         name[r.resource.size()] == '.' && name.ends_with(r.group);
}

bool has_index(sqlite3* db, const char* name) {
  Stmt q(db, "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1");
  q.bind(1, name);
  return sqlite3_step(q.s) == SQLITE_ROW;
}

bool has_table(sqlite3* db, const char* name) {
  Stmt q(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
  q.bind(1, name);
  return sqlite3_step(q.s) == SQLITE_ROW;
}

// The writer's INSERT of `rows` rows: seq and the columns after it, as
// History::insert_rows() binds them; a (time, id) already kept is left as
// it is (a change set routed again after a crash), while any other
// conflict - a seq given twice - fails the batch rather than dropping a row.
constexpr int kInsertColumns = 14;
std::string insert_sql(size_t rows) {
  std::string sql =
      "INSERT INTO history(seq, id, time_ms, cluster, resource, kind, namespace, name, uid, type, actor, paths, json,"
      " codec) VALUES";
  for (size_t r = 0; r < rows; ++r) {
    sql += r ? ",(?" : "(?";
    for (int c = 1; c < kInsertColumns; ++c) sql += ",?";
    sql += ')';
  }
  return sql + " ON CONFLICT(time_ms, id) DO NOTHING";
}

bool has_column(sqlite3* db, const char* table, const char* column) {
  Stmt q(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
  q.bind(1, table);
  q.bind(2, column);
  return sqlite3_step(q.s) == SQLITE_ROW;
}

}  // namespace

void configure_sqlite() noexcept { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }  // SQLITE_MISUSE once initialized

std::filesystem::path History::path_for(const std::filesystem::path& state_path) {
  return std::filesystem::path(state_path.string() + "-history");
}

History::History(const std::filesystem::path& path, bool read_only)
    : path_(path), codec_(std::make_unique<DictionaryCodec>()) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // Without SQLite's own mutex: every use of db_ is under mu_ (it was taken
  // and released per call, a tenth of a row's insert).
  if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error("history " + path.string() + ": cannot open: " + why);
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    {
      Stmt q(db_, "PRAGMA user_version");
      const int64_t format = sqlite3_step(q.s) == SQLITE_ROW ? sqlite3_column_int64(q.s, 0) : 0;
      if (format > kFormat)
        throw Error("history " + path.string() + ": format " + std::to_string(format) +
                    ", written by a newer kubetrail (this one knows up to format " + std::to_string(kFormat) + ")");
    }
    if (!read_only) {
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=NORMAL");
      // One index, unique by time then id: every query has a window, and
      // rows arrive in time order, so it grows at its right edge; the id
      // in it is how append() keeps a change set once, in the insert's own
      // lookup (it was a read of every row of the same millisecond - a
      // burst has dozens - and then the insert). Indexes by
      // id and by object (random positions: a page dirtied per row each)
      // cost more than the row itself (bench/state_bench,
      // docs/PERFORMANCE.md); a history written with them, or with the
      // time-only index, loses them here.
      // `json` is the change set's JSON text (codec 0) or a zstd frame of
      // it against history_dictionaries' row `codec` (a blob).
      exec(
          "CREATE TABLE IF NOT EXISTS history(seq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
          " time_ms INTEGER NOT NULL, cluster TEXT NOT NULL, resource TEXT NOT NULL, kind TEXT NOT NULL,"
          " namespace TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, type TEXT NOT NULL,"
          " actor TEXT NOT NULL, paths TEXT NOT NULL, json TEXT NOT NULL, codec INTEGER NOT NULL DEFAULT 0);"
          "CREATE TABLE IF NOT EXISTS history_dictionaries(id INTEGER PRIMARY KEY, resource TEXT NOT NULL UNIQUE,"
          " content BLOB NOT NULL);"
          "CREATE TABLE IF NOT EXISTS history_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);");
      if (!has_index(db_, "history_time_id")) {
        // Kept once by (time, id) since ids were no longer UNIQUE; a file
        // that holds a pair twice anyway (edited, or of a build that had a
        // slip) keeps its first, rather than refusing to open.
        exec(
            "DELETE FROM history WHERE seq NOT IN (SELECT MIN(seq) FROM history GROUP BY time_ms, id);"
            "CREATE UNIQUE INDEX history_time_id ON history(time_ms, id);");
      }
      exec("DROP INDEX IF EXISTS history_time; DROP INDEX IF EXISTS history_object;");
      if (!has_column(db_, "history", "codec"))  // format 0: every row text
        exec("ALTER TABLE history ADD COLUMN codec INTEGER NOT NULL DEFAULT 0");
      exec(("PRAGMA user_version = " + std::to_string(kFormat)).c_str());
      load_dictionaries();
      // The size cap's running total (a reader has no use for it, and it reads every row).
      Stmt q(db_, "SELECT COALESCE(SUM(length(json)), 0) FROM history");
      if (sqlite3_step(q.s) == SQLITE_ROW) bytes_ = static_cast<uint64_t>(sqlite3_column_int64(q.s, 0));
      // The next seq: above every one given out - the rows', the mark each
      // commit keeps, and a table with AUTOINCREMENT's own (files made
      // before the mark; sqlite_sequence exists only where such a table does).
      std::string last =
          "SELECT MAX(COALESCE((SELECT MAX(seq) FROM history), 0),"
          " COALESCE((SELECT value FROM history_meta WHERE name = 'last_seq'), 0)";
      if (has_table(db_, "sqlite_sequence"))
        last += ", COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'history'), 0)";
      Stmt s(db_, (last + ")").c_str());
      const int64_t last_given = sqlite3_step(s.s) == SQLITE_ROW ? sqlite3_column_int64(s.s, 0) : 0;
      // A value from the file: one that leaves no room for more rows is
      // refused by name (it was the signed overflow of the next seq).
      if (last_given >= INT64_MAX / 2)
        throw Error("history " + path.string() + ": its last seq " + std::to_string(last_given) +
                    " leaves no room for more rows (move the file away to start a new history)");
      next_seq_ = last_given + 1;
    } else {
      has_codec_ = has_column(db_, "history", "codec");
    }
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

History::~History() {
  for (auto& [sql, statement] : statements_) sqlite3_finalize(statement);
  sqlite3_close(db_);
}

void History::load_dictionaries() {
  Stmt q(db_, "SELECT id, resource, content FROM history_dictionaries");
  while (sqlite3_step(q.s) == SQLITE_ROW) {
    const int64_t id = sqlite3_column_int64(q.s, 0);
    const std::string_view content = q.blob(2);
    // Untrusted bytes: one the codec does not take (not what kubetrail
    // makes: change-set JSON, in zstd's format since format 2, or one zstd
    // refuses) is not loaded, and its rows are left out as naming a
    // missing one. Its resource's rows are kept as text from then on (its
    // name is taken: a second dictionary for it cannot be written).
    Packing& packing = packing_[q.text(1)];
    if (!codec_->has_dictionary(id)) {
      if (std::string why = codec_->add_dictionary(id, content); !why.empty()) {
        if (unreadable_.insert(id).second)
          spdlog::warn(
              "history {}: dictionary {} is not one kubetrail writes ({}); rows compressed against it are left out",
              path_.string(), id, why);
        packing.refused = true;
        continue;
      }
    }
    packing.dictionary = id;
  }
}

void History::make_dictionary(Packing& packing, const std::string& resource) {
  std::vector<std::string_view> samples(packing.samples.begin(), packing.samples.end());
  const std::string content = DictionaryCodec::dictionary_from(samples);
  Stmt d(db_, "INSERT INTO history_dictionaries(resource, content) VALUES(?1, ?2) RETURNING id");
  d.bind(1, resource);
  d.bind_blob(2, content);
  if (sqlite3_step(d.s) != SQLITE_ROW)
    throw Error("history " + path_.string() + ": cannot keep a dictionary: " + sqlite3_errmsg(db_));
  const int64_t id = sqlite3_column_int64(d.s, 0);
  if (std::string why = codec_->add_dictionary(id, content); !why.empty())  // its own content: never refused
    throw Error("history " + path_.string() + ": the dictionary made for " + resource + " does not load: " + why);
  packing.dictionary = id;
}

void History::forget_dictionary(Packing& packing) {
  codec_->remove_dictionary(packing.dictionary);
  packing.dictionary = 0;
}

bool History::read_row(int64_t seq, std::string_view id, int64_t codec, std::string_view stored, std::string& json) {
  if (codec == 0) {
    json.assign(stored);
    return true;
  }
  std::string why;
  try {
    // Made since this reader opened, else looked for once: a row and the
    // dictionary it names are committed together, so one that is not
    // there when its row is read never will be.
    if (!codec_->has_dictionary(codec) && !unreadable_.count(codec)) {
      load_dictionaries();
      if (!codec_->has_dictionary(codec)) unreadable_.insert(codec);
    }
    why = codec_->decompress(codec, stored, json);
  } catch (const Error& e) {
    why = e.what();
  }
  if (why.empty()) return true;
  spdlog::warn("history {}: row {} (change set {}) left out: {}", path_.string(), seq, id, why);
  return false;
}

void History::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string why = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error("history " + path_.string() + ": " + why);
  }
}

void History::append(const std::vector<model::ChangeSet>& batch) {
  std::vector<const model::ChangeSet*> pointers;
  pointers.reserve(batch.size());
  for (const auto& cs : batch) pointers.push_back(&cs);
  append(pointers);
}

void History::append(std::span<const model::ChangeSet* const> batch) {
  if (batch.empty()) return;
  std::lock_guard lock(mu_);
  // Dictionaries made in this batch: written with its rows and used for
  // the rest of it; forgotten again if it rolls back (its samples kept,
  // so the next batch makes the same one).
  std::vector<Packing*> made;
  uint64_t added = 0;  // stored bytes of the rows inserted
  const int64_t first_seq = next_seq_;
  if (rows_.size() < kRowsPerInsert) rows_.resize(kRowsPerInsert);
  exec("BEGIN IMMEDIATE");
  try {
    // A batch is mostly of one resource: its name and packing are looked
    // up when the resource changes, not per row.
    const std::string* resource = nullptr;
    Packing* packing_of_resource = nullptr;
    size_t filled = 0;  // rows_ waiting for their statement
    for (const model::ChangeSet* each : batch) {
      const model::ChangeSet& cs = *each;
      PendingRow& row = rows_[filled];
      row.cs = &cs;
      row.seq = next_seq_++;
      row.time_ms = rfc3339_to_ms(cs.observed_at).value_or(0);
      row.paths.clear();
      for (const auto& c : cs.changes) {
        if (!row.paths.empty()) row.paths += '\n';
        row.paths += c.path;
      }
      // Delivery's rendering when it made one (the same bytes as to_json()).
      row.rendering = cs.rendering();
      const std::string_view json = model::ChangeSet::text_of(*row.rendering);
      if (!packing_of_resource || !has_qualified_name(cs.resource, *resource)) {
        auto it = packing_.try_emplace(cs.resource.qualified_name()).first;  // a map's element: its address is stable
        resource = &it->first;
        packing_of_resource = &it->second;
      }
      row.resource = *resource;
      Packing& packing = *packing_of_resource;
      row.stored = json;
      row.codec = 0;
      if (packing.dictionary) {
        row.compressed.assign(codec_->compress(packing.dictionary, json));  // compress() reuses its buffer
        row.stored = row.compressed;
        row.codec = packing.dictionary;
      } else if (!packing.refused) {
        auto complete = [&] {
          return packing.samples.size() >= kDictionarySamples ||
                 packing.sample_bytes >= DictionaryCodec::kMaxDictionaryBytes;
        };
        if (!complete()) {  // else complete in a batch that rolled back
          packing.samples.emplace_back(json);
          packing.sample_bytes += json.size();
        }
        if (complete()) {
          make_dictionary(packing, *resource);
          made.push_back(&packing);
        }
      }
      if (++filled == kRowsPerInsert) {
        added += insert_rows(0, filled);
        filled = 0;
      }
    }
    for (size_t i = 0; i < filled; ++i) added += insert_rows(i, 1);
    {
      Stmt mark(statements_, db_,
                "INSERT INTO history_meta(name, value) VALUES('last_seq', ?1)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value");
      sqlite3_bind_int64(mark.s, 1, next_seq_ - 1);
      if (sqlite3_step(mark.s) != SQLITE_DONE)
        throw Error("history " + path_.string() + ": cannot keep the last seq: " + sqlite3_errmsg(db_));
    }
    exec("COMMIT");
    bytes_ += added;
    ++commits_.count;
    commits_.largest = std::max(commits_.largest, batch.size());
    for (Packing* p : made) {
      p->samples = {};
      p->sample_bytes = 0;
    }
  } catch (...) {
    for (Packing* p : made) forget_dictionary(*p);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    next_seq_ = first_seq;  // none of the batch's seqs was kept
    throw;
  }
  for (size_t i = 0; i < kRowsPerInsert; ++i) rows_[i].rendering.reset();  // the batch's, not kept past it
}

uint64_t History::insert_rows(size_t first, size_t n) {
  static const std::string many = insert_sql(kRowsPerInsert), one = insert_sql(1);
  Stmt q(statements_, db_, (n == 1 ? one : many).c_str());  // prepared once per History
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const PendingRow& row = rows_[first + i];
    const model::ChangeSet& cs = *row.cs;
    const int at = static_cast<int>(i) * kInsertColumns;
    sqlite3_bind_int64(q.s, at + 1, row.seq);
    q.bind(at + 2, cs.id);
    sqlite3_bind_int64(q.s, at + 3, row.time_ms);
    q.bind(at + 4, cs.cluster);
    q.bind(at + 5, row.resource);
    q.bind(at + 6, cs.resource.kind);
    q.bind(at + 7, cs.object_namespace);
    q.bind(at + 8, cs.name);
    q.bind(at + 9, cs.uid);
    q.bind(at + 10, model::to_string(cs.type));
    q.bind(at + 11, cs.actor ? std::string_view(cs.actor->manager) : std::string_view());
    q.bind(at + 12, row.paths);
    q.bind_object(at + 13, row.stored, row.codec);
    bytes += row.stored.size();
  }
  if (sqlite3_step(q.s) != SQLITE_DONE)
    throw Error("history " + path_.string() + ": cannot insert: " + sqlite3_errmsg(db_));
  if (static_cast<size_t>(sqlite3_changes(db_)) == n) return bytes;
  // Some were kept already: what was inserted is what holds their seqs.
  Stmt kept(db_, "SELECT COALESCE(SUM(length(json)), 0) FROM history WHERE seq BETWEEN ?1 AND ?2");
  sqlite3_bind_int64(kept.s, 1, rows_[first].seq);
  sqlite3_bind_int64(kept.s, 2, rows_[first + n - 1].seq);
  return sqlite3_step(kept.s) == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(kept.s, 0)) : 0;
}

namespace {

// The filter's conditions (all but the path patterns, matched row by row),
// parameters ?1 to ?10 as bind_filter() binds them.
constexpr const char* kFilterWhere =
    " WHERE time_ms >= ?1 AND time_ms < ?2"
    " AND (?3 = '' OR namespace = ?3) AND (?4 = '' OR name = ?4) AND (?5 = '' OR actor = ?5)"
    " AND (?6 = '' OR type = ?6)"
    " AND (?7 = '' OR resource = ?7 OR resource LIKE ?7 || '.%' OR lower(kind) = lower(?7))"
    " AND (?8 = 0 OR time_ms < ?10 OR (time_ms = ?10 AND seq < ?8)) AND seq > ?9";

void bind_filter(Stmt& q, const History::Filter& f) {
  sqlite3_bind_int64(q.s, 1, f.since_ms);
  sqlite3_bind_int64(q.s, 2, f.until_ms);
  q.bind(3, f.namespace_);
  q.bind(4, f.name);
  q.bind(5, f.actor);
  q.bind(6, f.type);
  q.bind(7, f.resource);
  sqlite3_bind_int64(q.s, 8, f.before_seq);
  sqlite3_bind_int64(q.s, 9, f.after_seq);
  sqlite3_bind_int64(q.s, 10, f.before_time_ms);
}

}  // namespace

std::vector<History::Row> History::query(const Filter& f) {
  std::vector<model::PathPattern> patterns;
  for (const auto& p : f.paths) patterns.push_back(model::PathPattern::parse(p));  // throws Error naming it
  std::lock_guard lock(mu_);
  if (!has_codec_) has_codec_ = has_column(db_, "history", "codec");  // upgraded by its writer since
  std::string sql = std::string("SELECT seq, time_ms, paths, json, id, ") + (has_codec_ ? "codec" : "0") +
                    " FROM history" + kFilterWhere;
  sql += f.in_written_order ? " ORDER BY seq"
         : f.oldest_first   ? " ORDER BY time_ms, seq"
                            : " ORDER BY time_ms DESC, seq DESC";
  Stmt q(db_, sql.c_str());
  bind_filter(q, f);
  std::vector<Row> out;
  int rc;
  while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
    if (!patterns.empty() && !any_overlaps(patterns, q.text(2))) continue;
    Row row{sqlite3_column_int64(q.s, 0), sqlite3_column_int64(q.s, 1), q.text(4), {}};
    if (!read_row(row.seq, row.id, sqlite3_column_int64(q.s, 5), q.blob(3), row.json)) continue;
    out.push_back(std::move(row));
    if (f.limit && out.size() >= f.limit) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw Error("history " + path_.string() + ": " + sqlite3_errmsg(db_));
  return out;
}

History::Filter History::filter_from(const std::function<std::optional<std::string>(const std::string&)>& get,
                                     int64_t now_ms, const std::string& prefix) {
  Filter f;
  if (auto v = get("since")) f.since_ms = parse_when(prefix + "since", *v, now_ms);
  if (auto v = get("until")) f.until_ms = parse_when(prefix + "until", *v, now_ms);
  for (auto [name, field] : {std::pair{"namespace", &f.namespace_},
                             {"resource", &f.resource},
                             {"name", &f.name},
                             {"actor", &f.actor},
                             {"type", &f.type}})
    if (auto v = get(name)) *field = *v;
  if (auto v = get("path"); v && !v->empty()) {
    try {
      model::PathPattern::parse(*v);
    } catch (const Error& e) {
      throw Error(prefix + "path: " + e.what());
    }  // an Error naming what is wrong with it, now rather than per row
    f.paths.push_back(*v);
  }
  auto number = [](const std::string& param, std::string_view text) {
    int64_t n = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n < 0)
      throw Error(param + " \"" + std::string(text) + "\": expected a number");
    return n;
  };
  if (auto v = get("limit")) f.limit = static_cast<size_t>(number(prefix + "limit", *v));
  if (auto v = get("cursor"); v && !v->empty()) {
    auto dot = v->find('.');
    if (dot == std::string::npos) throw Error(prefix + "cursor \"" + *v + "\": not one this API gave out");
    f.before_time_ms = number(prefix + "cursor", std::string_view(*v).substr(0, dot));
    f.before_seq = number(prefix + "cursor", std::string_view(*v).substr(dot + 1));
  }
  return f;
}

std::string History::cursor_after(const Row& row) {
  return std::to_string(row.time_ms) + "." + std::to_string(row.seq);
}

// No index by id (see the constructor): a scan, once per stream resumed.
int64_t History::seq_of(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT seq FROM history WHERE id = ?1");
  q.bind(1, id);
  return sqlite3_step(q.s) == SQLITE_ROW ? sqlite3_column_int64(q.s, 0) : 0;
}

std::vector<uint64_t> History::histogram(const Filter& f, size_t buckets) {
  std::vector<uint64_t> counts(std::max<size_t>(buckets, 1), 0);
  const int64_t until = f.until_ms == INT64_MAX ? now_unix_ms() + 1 : f.until_ms;
  if (until <= f.since_ms) return counts;
  // Each bucket spans width ms; the last one takes what rounding leaves.
  const int64_t width = std::max<int64_t>(
      1, (until - f.since_ms + static_cast<int64_t>(counts.size()) - 1) / static_cast<int64_t>(counts.size()));
  Filter all = f;
  all.until_ms = until;
  all.limit = 0;
  all.before_seq = 0;
  all.after_seq = 0;
  if (f.paths.empty()) {  // SQLite counts; no row leaves the database
    std::string sql = std::string("SELECT (time_ms - ?1) / ?11, COUNT(*) FROM history") + kFilterWhere + " GROUP BY 1";
    std::lock_guard lock(mu_);
    Stmt q(db_, sql.c_str());
    bind_filter(q, all);
    sqlite3_bind_int64(q.s, 11, width);
    while (sqlite3_step(q.s) == SQLITE_ROW) {
      auto b = static_cast<size_t>(std::max<int64_t>(0, sqlite3_column_int64(q.s, 0)));
      counts[std::min(b, counts.size() - 1)] += static_cast<uint64_t>(sqlite3_column_int64(q.s, 1));
    }
    return counts;
  }
  for (const auto& r : query(all)) {
    auto b = static_cast<size_t>((r.time_ms - f.since_ms) / width);
    ++counts[std::min(b, counts.size() - 1)];
  }
  return counts;
}

int64_t History::last_seq() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT COALESCE(MAX(seq), 0) FROM history");
  return sqlite3_step(q.s) == SQLITE_ROW ? sqlite3_column_int64(q.s, 0) : 0;
}

size_t History::compact(int64_t max_age_ms, uint64_t max_bytes, int64_t now_ms) {
  std::lock_guard lock(mu_);
  size_t removed = 0;
  // One pass: the rows go, and say how large they were (RETURNING, SQLite 3.35).
  auto remove = [&](const char* which, int64_t arg) {
    Stmt q(db_, (std::string("DELETE FROM history WHERE seq IN (") + which + ") RETURNING length(json)").c_str());
    sqlite3_bind_int64(q.s, 1, arg);
    int rc;
    while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
      bytes_ -= std::min(bytes_, static_cast<uint64_t>(sqlite3_column_int64(q.s, 0)));
      ++removed;
    }
    if (rc != SQLITE_DONE) throw Error("history " + path_.string() + ": " + sqlite3_errmsg(db_));
  };
  exec("BEGIN IMMEDIATE");
  try {
    remove("SELECT seq FROM history WHERE time_ms < ?1", now_ms - max_age_ms);
    // Oldest first until under the cap, in steps sized by the rows' mean
    // size (at most a thousand rows a step).
    while (bytes_ > max_bytes) {
      Stmt count(db_, "SELECT COUNT(*) FROM history");
      int64_t rows = sqlite3_step(count.s) == SQLITE_ROW ? sqlite3_column_int64(count.s, 0) : 0;
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
