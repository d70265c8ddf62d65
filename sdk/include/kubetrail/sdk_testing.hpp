// kubetrail/sdk_testing.hpp - a fake host for plugin authors' unit tests.
//
// Lets a test create a plugin instance through its real descriptor (so the
// entry symbol, schema-less create and the noexcept trampolines are all
// exercised), hand it change sets built in the test, and read back what it
// logged and which metrics it recorded. No kubetrail binary needed.
//
//   kubetrail::sdk::testing::FakeHost host;
//   auto plugin = host.create(kubetrail_plugin_entry_v1(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR), R"({"x":1})");
//   kubetrail::sdk::testing::FakeChangeSet cs;
//   cs.kind = "Deployment"; cs.name = "web"; cs.add_change(KUBETRAIL_OP_REPLACE, "spec.replicas", "2", "3");
//   auto result = plugin.handle({&cs});
//   CHECK(result.status == KUBETRAIL_OK);
//
// Not thread-safe; one FakeHost per test. Like a real host, a test binary
// should ignore SIGPIPE (plugin.h's promise to plugins).
#pragma once

#include <kubetrail/plugin.h>

#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kubetrail::sdk::testing {

// A change set owned by the test; view() gives the ABI struct a plugin sees.
struct FakeChangeSet {
  uint32_t type = KUBETRAIL_MODIFIED;
  std::string id = "test/uid-1/1", cluster = "test", group = "apps", version = "v1", resource = "deployments",
              kind = "Deployment", object_namespace = "default", name = "web", uid = "uid-1", resource_version = "1",
              summary = "Deployment default/web changed", observed_at = "2026-01-01T00:00:00.000Z";
  std::string actor_manager, actor_operation, actor_time;  // ABI 1.1
  bool catch_up = false;
  std::string old_object, new_object;
  std::string snapshot_id;  // ABI 1.2: with type KUBETRAIL_SNAPSHOT
  uint64_t snapshot_index = 0, snapshot_total = 0;
  std::string json;  // "" = a minimal JSON built from the fields above
  struct Change {
    uint32_t op;
    std::string path, old_json, new_json;
  };
  std::vector<Change> changes;

  void add_change(uint32_t op, std::string path, std::string old_json, std::string new_json) {
    changes.push_back({op, std::move(path), std::move(old_json), std::move(new_json)});
  }

  const kubetrail_change_set* view() {
    auto s = [](const std::string& v) { return kubetrail_str{v.c_str(), v.size()}; };
    if (json.empty())
      json = "{\"schemaVersion\":\"kubetrail.dev/v1\",\"id\":\"" + id + "\",\"name\":\"" + name + "\",\"summary\":\"" +
             summary + "\"}";
    padded_.assign(json.size() + 1 + KUBETRAIL_JSON_PADDING, '\0');
    std::memcpy(padded_.data(), json.data(), json.size());
    abi_changes_.clear();
    for (const auto& c : changes)
      abi_changes_.push_back({sizeof(kubetrail_field_change), c.op, s(c.path), s(c.old_json), s(c.new_json)});
    change_ptrs_.clear();
    for (const auto& c : abi_changes_) change_ptrs_.push_back(&c);
    view_ = kubetrail_change_set{};
    view_.struct_size = sizeof view_;
    view_.type = type;
    view_.id = s(id);
    view_.cluster = s(cluster);
    view_.group = s(group);
    view_.version = s(version);
    view_.resource = s(resource);
    view_.kind = s(kind);
    view_.object_namespace = s(object_namespace);
    view_.name = s(name);
    view_.uid = s(uid);
    view_.resource_version = s(resource_version);
    view_.summary = s(summary);
    view_.observed_at = s(observed_at);
    view_.changes = change_ptrs_.data();
    view_.change_count = change_ptrs_.size();
    view_.json = {padded_.data(), json.size()};
    view_.actor_manager = s(actor_manager);
    view_.actor_operation = s(actor_operation);
    view_.actor_time = s(actor_time);
    view_.catch_up = catch_up ? 1 : 0;
    view_.old_object = s(old_object);
    view_.new_object = s(new_object);
    view_.snapshot_id = s(snapshot_id);
    view_.snapshot_index = snapshot_index;
    view_.snapshot_total = snapshot_total;
    return &view_;
  }

 private:
  std::vector<char> padded_;
  std::vector<kubetrail_field_change> abi_changes_;
  std::vector<const kubetrail_field_change*> change_ptrs_;
  kubetrail_change_set view_{};
};

// What a host of ABI 1.0 hands a plugin: the same struct, ending before
// the 1.1 members (the SDK's accessors must then read nothing past it).
inline const kubetrail_change_set* as_abi_1_0(FakeChangeSet& cs) {
  auto* v = const_cast<kubetrail_change_set*>(cs.view());
  v->struct_size = static_cast<uint32_t>(offsetof(kubetrail_change_set, actor_manager));
  return v;
}

// What a host of ABI 1.1 hands a plugin: the struct ends before the 1.2
// members.
inline const kubetrail_change_set* as_abi_1_1(FakeChangeSet& cs) {
  auto* v = const_cast<kubetrail_change_set*>(cs.view());
  v->struct_size = static_cast<uint32_t>(offsetof(kubetrail_change_set, snapshot_id));
  return v;
}

struct HandleResult {
  int32_t status = KUBETRAIL_OK;
  uint32_t retry_after_ms = 0;
  std::string message;
  std::vector<int32_t> item_status;
};

class FakeHost {
 public:
  struct LogLine {
    int32_t level;
    std::string text;
  };
  std::vector<LogLine> logs;
  std::vector<std::string> metric_names;  // index = metric id
  std::map<std::string, double> metric_values;
  int32_t log_level = KUBETRAIL_LOG_TRACE;

  class Instance {
   public:
    Instance(const kubetrail_plugin_descriptor* d, void* instance) : d_(d), instance_(instance) {}
    Instance(Instance&& o) noexcept : d_(o.d_), instance_(o.instance_) { o.instance_ = nullptr; }
    ~Instance() {
      if (instance_) d_->destroy(instance_);
    }
    HandleResult handle(std::vector<FakeChangeSet*> items) {
      std::vector<const kubetrail_change_set*> views;
      for (auto* i : items) views.push_back(i->view());
      kubetrail_batch batch{sizeof(kubetrail_batch), views.data(), views.size()};
      HandleResult r;
      r.item_status.assign(views.size(), KUBETRAIL_ITEM_UNSET);
      kubetrail_batch_result res{sizeof res, 0, r.item_status.data(), r.item_status.size()};
      char buf[1024] = {};
      kubetrail_error err{sizeof err, buf, sizeof buf};
      r.status = d_->handle_batch(instance_, &batch, &res, &err);
      r.retry_after_ms = res.retry_after_ms;
      r.message = buf;
      return r;
    }
    HandleResult flush(uint32_t reason = KUBETRAIL_FLUSH_SHUTDOWN) {
      HandleResult r;
      if (!d_->flush) return r;
      char buf[1024] = {};
      kubetrail_error err{sizeof err, buf, sizeof buf};
      r.status = d_->flush(instance_, reason, &err);
      r.message = buf;
      return r;
    }

   private:
    const kubetrail_plugin_descriptor* d_;
    void* instance_;
  };

  // Creates an instance; throws std::runtime_error with the plugin's message
  // if create fails. (Schema validation is the real host's job.)
  Instance create(const kubetrail_plugin_descriptor* d, const std::string& config_json = "{}") {
    if (!d) throw std::runtime_error("plugin refused the host ABI version");
    char buf[1024] = {};
    kubetrail_error err{sizeof err, buf, sizeof buf};
    void* instance = nullptr;
    if (d->create(config_json.c_str(), config_json.size(), &api_, this, &instance, &err) != KUBETRAIL_OK)
      throw std::runtime_error(buf);
    return Instance(d, instance);
  }

 private:
  static FakeHost* self(void* ctx) { return static_cast<FakeHost*>(ctx); }
  static void log(void* ctx, int32_t level, const char* msg, size_t len) {
    self(ctx)->logs.push_back({level, std::string(msg, len)});
  }
  static int32_t log_enabled(void* ctx, int32_t level) { return level >= self(ctx)->log_level; }
  static int32_t metric_define(void* ctx, int32_t, const char* name, const char*) {
    self(ctx)->metric_names.push_back(name);
    return static_cast<int32_t>(self(ctx)->metric_names.size() - 1);
  }
  static void metric_record(void* ctx, int32_t id, double v) {
    auto* h = self(ctx);
    if (id >= 0 && static_cast<size_t>(id) < h->metric_names.size()) h->metric_values[h->metric_names[id]] += v;
  }
  const kubetrail_host_api api_{sizeof(kubetrail_host_api), &FakeHost::log, &FakeHost::log_enabled,
                                &FakeHost::metric_define, &FakeHost::metric_record};
};

}  // namespace kubetrail::sdk::testing
