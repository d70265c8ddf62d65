// A prepared SQLite statement for the state module (the state store and
// the history): finalized when it goes out of scope, or kept prepared in a
// per-connection cache for the hot path. Internal to core/state.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace kubetrail::state {

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

}  // namespace kubetrail::state
