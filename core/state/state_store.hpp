// The state store: what kubetrail remembers across restarts, in one SQLite
// file (WAL mode). Today it holds checkpoints: per resource, the last
// resourceVersion and every object's pruned content as last seen, so that
// at start-up the fresh list can be compared with what was there when
// kubetrail stopped and the real difference reported once (catch-up).
//
// Thread-safe: one connection behind a mutex (writes are batched by the
// callers, so the lock is taken rarely).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kube/object_store.hpp"

struct sqlite3;

namespace kubetrail::state {

class StateStore {
 public:
  // Opens (creating if needed) the store at `path`. A file that is not a
  // kubetrail state store, or is corrupt, is a kubetrail::Error naming it;
  // with reset = true such a file is moved aside (PATH.corrupt-<time>) and a
  // fresh store started.
  static std::unique_ptr<StateStore> open(const std::string& path, bool reset);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  struct Checkpoint {
    std::string resource_version;                       // of the last list/watch position saved
    std::map<std::string, kube::StoredObject> objects;  // by namespace/name
  };
  // The checkpoint of a resource (its qualified name, e.g. deployments.apps),
  // or nullopt when this resource was never checkpointed (first run).
  std::optional<Checkpoint> load(const std::string& resource);

  // Saves changes of one resource in one transaction: objects to upsert,
  // keys to delete, and the resourceVersion reached.
  void save(const std::string& resource, const std::vector<std::pair<std::string, const kube::StoredObject*>>& upserts,
            const std::vector<std::string>& deletes, const std::string& resource_version);

  const std::string& path() const noexcept { return path_; }

 private:
  StateStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  void exec(const char* sql);
  sqlite3* db_;
  std::string path_;
  std::mutex mu_;
};

}  // namespace kubetrail::state
