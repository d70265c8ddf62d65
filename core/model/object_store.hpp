// The informer's cache: the last known state of every object of one resource,
// keyed by namespace/name. It holds objects pruned of noise (managedFields,
// status unless wanted, ...) and with secrets already redacted, as minified
// JSON: a Pod costs ~2.5 KB here instead of client-go's ~33 KiB, and a
// status-only update can be recognised by comparing bytes.
//
// Not thread-safe: owned by one informer (or the replay loop).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kubetrail::model {

// One metadata.managedFields entry, without its field set: who wrote the
// object and when, for actor attribution.
struct ManagerEntry {
  std::string manager;
  std::string operation;    // "Update" or "Apply"
  std::string time;         // RFC 3339
  std::string subresource;  // "" or e.g. "status", "scale"
  bool operator==(const ManagerEntry&) const = default;
};

struct StoredObject {
  std::string json;  // pruned, redacted, minified object
  std::string uid;
  std::string resource_version;
  std::vector<ManagerEntry> managers;
};

class ObjectStore {
 public:
  static std::string key_of(std::string_view ns, std::string_view name) {
    std::string k;
    k.reserve(ns.size() + 1 + name.size());
    k.append(ns).push_back('/');
    k.append(name);
    return k;
  }
  const StoredObject* find(std::string_view key) const {
    auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
  }
  StoredObject* find_mutable(std::string_view key) {
    auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
  }
  void put(std::string key, StoredObject obj) { objects_.insert_or_assign(std::move(key), std::move(obj)); }
  void erase(std::string_view key) {
    auto it = objects_.find(key);
    if (it != objects_.end()) objects_.erase(it);
  }
  size_t size() const noexcept { return objects_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [k, v] : objects_) f(k, v);
  }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, StoredObject, Hash, std::equal_to<>> objects_;
};

}  // namespace kubetrail::model
