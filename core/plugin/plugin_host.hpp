// The plugin host: loads handler plugins (shared objects speaking the C ABI
// of kubetrail/plugin.h), checks them, validates each handler's config
// against the plugin's JSON Schema, creates instances and calls them with
// change sets turned into ABI views.
//
// Loading happens on the control thread. A Handler is called as its
// plugin's threading mode allows (SERIAL: one deliver() at a time - the
// caller's duty, see deliver/).
#pragma once

#include <kubetrail/plugin.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/metrics.hpp"
#include "model/change_set.hpp"

namespace kubetrail::plugin {

struct PluginInfo {
  std::string path;
  std::string name, version, description;
  std::string config_schema;  // "" when the plugin takes no config
  uint32_t abi_major = 0, abi_minor = 0;
  uint32_t threading = KUBETRAIL_THREADING_SERIAL;
  uint64_t capabilities = 0;
};

// A loaded, checked plugin library. Never unloaded (see plugin.h).
class PluginLibrary {
 public:
  // Throws kubetrail::Error with one line naming the file and the reason.
  static std::shared_ptr<const PluginLibrary> load(const std::filesystem::path& path);
  ~PluginLibrary();

  const PluginInfo& info() const noexcept { return info_; }
  const kubetrail_plugin_descriptor& descriptor() const noexcept { return desc_; }

  // Throws kubetrail::Error naming `context`, the failing key and what the
  // schema expected.
  void validate_config(const nlohmann::json& config, std::string_view context) const;

 private:
  PluginLibrary() = default;
  struct Schema;
  kubetrail_plugin_descriptor desc_{};
  PluginInfo info_;
  std::unique_ptr<Schema> schema_;
};

// Where a handler's `plugin` value points: a path when it contains '/' or
// ends in ".so", else DIR/NAME.so.
std::filesystem::path resolve_plugin(std::string_view plugin, const std::filesystem::path& dir);

// The plugins directory when the config names none: beside the executable,
// as installed (<prefix>/lib/kubetrail/plugins) or in the build tree
// (<build>/plugins).
std::filesystem::path default_plugin_dir();

// Loads each plugin file once.
class PluginLoader {
 public:
  explicit PluginLoader(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::shared_ptr<const PluginLibrary> load(std::string_view plugin);
  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  std::filesystem::path dir_;
  std::map<std::string, std::shared_ptr<const PluginLibrary>> loaded_;
};

// A change set as plugins see it: the ABI structs pointing into a ChangeSet
// and its JSON text (with the promised padding). Build once, hand to every
// handler of the chain. The ChangeSet must outlive it.
class AbiChangeSet {
 public:
  explicit AbiChangeSet(const model::ChangeSet& cs);
  AbiChangeSet(const AbiChangeSet&) = delete;
  AbiChangeSet& operator=(const AbiChangeSet&) = delete;
  const kubetrail_change_set* view() const noexcept { return &view_; }
  const model::ChangeSet& change_set() const noexcept { return cs_; }
  // The change set's JSON (schema v1), as handed to plugins.
  std::string_view json() const noexcept { return {view_.json.ptr, view_.json.len}; }

 private:
  const model::ChangeSet& cs_;
  std::string type_text_;
  std::shared_ptr<const std::string> json_;  // the change set's rendering: JSON + padding zero bytes
  std::vector<kubetrail_field_change> changes_;
  std::vector<const kubetrail_field_change*> change_ptrs_;
  kubetrail_change_set view_{};
};

// What a plugin said about one delivery.
struct Outcome {
  int32_t status = KUBETRAIL_OK;  // kubetrail_status_code
  uint32_t retry_after_ms = 0;
  std::string message;               // the plugin's error text
  std::vector<int32_t> item_status;  // per item, UNSET resolved to status
};

std::string_view status_name(int32_t status) noexcept;

// create() answered KUBETRAIL_RETRY: worth calling again after a while.
class TransientCreateError : public Error {
 public:
  using Error::Error;
};

// One [[handlers]] entry: a plugin instance with its config.
class Handler {
 public:
  // Validates the config against the plugin's schema, then create()s.
  // Throws kubetrail::Error: "handler "NAME" (plugin P): ..." -
  // TransientCreateError when the plugin said RETRY.
  Handler(std::string name, std::shared_ptr<const PluginLibrary> lib, const nlohmann::json& config, Metrics* metrics);
  ~Handler();
  Handler(const Handler&) = delete;
  Handler& operator=(const Handler&) = delete;

  const std::string& name() const noexcept { return name_; }
  bool batches() const noexcept { return lib_->info().capabilities & KUBETRAIL_CAP_BATCH; }
  // Snapshot change sets are for plugins built against ABI 1.2 or later:
  // an older one would read the type it does not know as Modified.
  bool takes_snapshots() const noexcept { return takes_snapshots(lib_->info()); }
  static bool takes_snapshots(const PluginInfo& info) noexcept { return info.abi_minor >= 2; }

  // Calls handle_batch. Never throws; a plugin that returns an unknown
  // status is treated as FAIL.
  Outcome deliver(std::span<const AbiChangeSet* const> items);
  Outcome flush(uint32_t reason);

  struct Context;  // the host context handed to the plugin

 private:
  std::string name_;
  std::shared_ptr<const PluginLibrary> lib_;
  std::unique_ptr<Context> ctx_;
  void* instance_ = nullptr;
};

}  // namespace kubetrail::plugin
