// kubetrail/sdk.hpp - header-only C++20 SDK for kubetrail handler plugins.
//
// A thin layer over the C ABI in kubetrail/plugin.h: string_view accessors
// over the host's views, a base class to derive from, and one macro that
// emits the entry symbol and descriptor. Every call from the host goes
// through a noexcept trampoline that turns exceptions into the host's error
// buffer, so an exception never crosses the ABI.
//
// Usage:
//
//   #include <kubetrail/sdk.hpp>
//   class Counter : public kubetrail::sdk::Plugin {
//    public:
//     Counter(std::string_view config_json, kubetrail::sdk::Host host);
//     kubetrail::sdk::Result handle(const kubetrail::sdk::Batch& batch) override {
//       for (const auto& cs : batch) host().log(kubetrail::sdk::LogLevel::info, cs.summary());
//       return kubetrail::sdk::Result::ok();
//     }
//   };
//   KUBETRAIL_PLUGIN(Counter, "counter", "1.0.0", "counts change sets", R"({"type":"object"})")
//
// Thread safety: a Plugin instance is called as the descriptor's threading
// mode says (SERIAL by default: one handle() at a time). Host is thread-safe.
#pragma once

#include <kubetrail/plugin.h>

#include <cstdint>
#include <exception>
#include <iterator>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace kubetrail::sdk {

inline std::string_view view(const kubetrail_str& s) noexcept { return {s.ptr, s.len}; }

enum class ChangeType : uint32_t {
  added = KUBETRAIL_ADDED,
  modified = KUBETRAIL_MODIFIED,
  deleted = KUBETRAIL_DELETED,
  snapshot = KUBETRAIL_SNAPSHOT  // since ABI 1.2: an inventory item, not a change
};
enum class FieldOp : uint32_t { add = KUBETRAIL_OP_ADD, remove = KUBETRAIL_OP_REMOVE, replace = KUBETRAIL_OP_REPLACE };
enum class Status : int32_t {
  ok = KUBETRAIL_OK,
  retry = KUBETRAIL_RETRY,
  fail = KUBETRAIL_FAIL,
  stop = KUBETRAIL_STOP
};
enum class LogLevel : int32_t {
  trace = KUBETRAIL_LOG_TRACE,
  debug = KUBETRAIL_LOG_DEBUG,
  info = KUBETRAIL_LOG_INFO,
  warn = KUBETRAIL_LOG_WARN,
  error = KUBETRAIL_LOG_ERROR
};
enum class MetricKind : int32_t {
  counter = KUBETRAIL_METRIC_COUNTER,
  gauge = KUBETRAIL_METRIC_GAUGE,
  histogram = KUBETRAIL_METRIC_HISTOGRAM
};

inline std::string_view to_string(ChangeType t) noexcept {
  switch (t) {
    case ChangeType::added: return "Added";
    case ChangeType::deleted: return "Deleted";
    case ChangeType::snapshot: return "Snapshot";
    default: return "Modified";  // unknown future types read as Modified (ABI rule)
  }
}
inline std::string_view to_string(FieldOp op) noexcept {
  switch (op) {
    case FieldOp::add: return "add";
    case FieldOp::remove: return "remove";
    default: return "replace";
  }
}

// One field change; values are minified JSON text ("" when absent).
class FieldChange {
 public:
  explicit FieldChange(const kubetrail_field_change* c) noexcept : c_(c) {}
  FieldOp op() const noexcept { return static_cast<FieldOp>(c_->op); }
  std::string_view path() const noexcept { return view(c_->path); }
  std::string_view old_json() const noexcept { return view(c_->old_json); }
  std::string_view new_json() const noexcept { return view(c_->new_json); }

 private:
  const kubetrail_field_change* c_;
};

// A view of one change set; valid only during the handle() call.
class ChangeSet {
 public:
  explicit ChangeSet(const kubetrail_change_set* cs) noexcept : cs_(cs) {}
  ChangeType type() const noexcept { return static_cast<ChangeType>(cs_->type); }
  std::string_view type_name() const noexcept { return to_string(type()); }
  std::string_view id() const noexcept { return view(cs_->id); }
  std::string_view cluster() const noexcept { return view(cs_->cluster); }
  std::string_view group() const noexcept { return view(cs_->group); }
  std::string_view version() const noexcept { return view(cs_->version); }
  std::string_view resource() const noexcept { return view(cs_->resource); }
  std::string_view kind() const noexcept { return view(cs_->kind); }
  std::string_view object_namespace() const noexcept { return view(cs_->object_namespace); }
  std::string_view name() const noexcept { return view(cs_->name); }
  std::string_view uid() const noexcept { return view(cs_->uid); }
  std::string_view resource_version() const noexcept { return view(cs_->resource_version); }
  std::string_view summary() const noexcept { return view(cs_->summary); }
  std::string_view observed_at() const noexcept { return view(cs_->observed_at); }
  // The whole change set as JSON; at least KUBETRAIL_JSON_PADDING readable
  // bytes follow it, so simdjson can parse it in place.
  std::string_view json() const noexcept { return view(cs_->json); }
  // Who made the change (the managedFields entry that moved); all "" when
  // unknown (or from a host older than ABI 1.1).
  std::string_view actor_manager() const noexcept { return since_1_1(&kubetrail_change_set::actor_manager); }
  std::string_view actor_operation() const noexcept { return since_1_1(&kubetrail_change_set::actor_operation); }
  std::string_view actor_time() const noexcept { return since_1_1(&kubetrail_change_set::actor_time); }
  // Found by comparing a list with what kubetrail had (restart, 410 Gone).
  bool catch_up() const noexcept {
    return KUBETRAIL_HAS_MEMBER(cs_, kubetrail_change_set, catch_up) && cs_->catch_up != 0;
  }
  // The pruned, redacted object before / after, as JSON; "" when the change
  // set does not carry it (Added has only new, Deleted only old, Modified
  // both with [diff] include_objects).
  std::string_view old_object_json() const noexcept { return since_1_1(&kubetrail_change_set::old_object); }
  std::string_view new_object_json() const noexcept { return since_1_1(&kubetrail_change_set::new_object); }
  // Snapshot only (ABI 1.2): the snapshot's id, and this object's place in
  // it (1-based) of how many; "" and 0 otherwise.
  std::string_view snapshot_id() const noexcept {
    return KUBETRAIL_HAS_MEMBER(cs_, kubetrail_change_set, snapshot_id) ? view(cs_->snapshot_id) : std::string_view();
  }
  uint64_t snapshot_index() const noexcept {
    return KUBETRAIL_HAS_MEMBER(cs_, kubetrail_change_set, snapshot_index) ? cs_->snapshot_index : 0;
  }
  uint64_t snapshot_total() const noexcept {
    return KUBETRAIL_HAS_MEMBER(cs_, kubetrail_change_set, snapshot_total) ? cs_->snapshot_total : 0;
  }
  size_t change_count() const noexcept { return cs_->change_count; }
  FieldChange change(size_t i) const noexcept { return FieldChange(cs_->changes[i]); }
  std::vector<FieldChange> changes() const {
    std::vector<FieldChange> out;
    out.reserve(cs_->change_count);
    for (size_t i = 0; i < cs_->change_count; ++i) out.emplace_back(cs_->changes[i]);
    return out;
  }
  const kubetrail_change_set* raw() const noexcept { return cs_; }

 private:
  // A member added in ABI 1.1, or "" when the host's struct ends before it.
  std::string_view since_1_1(kubetrail_str kubetrail_change_set::*member) const noexcept {
    const auto* base = reinterpret_cast<const char*>(cs_);
    const auto* field = reinterpret_cast<const char*>(&(cs_->*member));
    if (cs_->struct_size < static_cast<size_t>(field - base) + sizeof(kubetrail_str)) return {};
    return view(cs_->*member);
  }
  const kubetrail_change_set* cs_;
};

// A batch of change sets; iterable, valid only during the handle() call.
class Batch {
 public:
  explicit Batch(const kubetrail_batch* b) noexcept : b_(b) {}
  size_t size() const noexcept { return b_->count; }
  ChangeSet operator[](size_t i) const noexcept { return ChangeSet(b_->items[i]); }

  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = ChangeSet;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = ChangeSet;
    iterator() = default;
    iterator(const kubetrail_change_set* const* p) noexcept : p_(p) {}
    ChangeSet operator*() const noexcept { return ChangeSet(*p_); }
    iterator& operator++() noexcept {
      ++p_;
      return *this;
    }
    iterator operator++(int) noexcept {
      auto t = *this;
      ++p_;
      return t;
    }
    bool operator==(const iterator&) const = default;

   private:
    const kubetrail_change_set* const* p_ = nullptr;
  };
  iterator begin() const noexcept { return {b_->items}; }
  iterator end() const noexcept { return {b_->items + b_->count}; }

 private:
  const kubetrail_batch* b_;
};

// The host's services, bound to one handler instance. Copyable, thread-safe.
class Host {
 public:
  Host() = default;
  Host(const kubetrail_host_api* api, void* ctx) noexcept : api_(api), ctx_(ctx) {}
  bool enabled(LogLevel level) const noexcept {
    return api_ && api_->log_enabled && api_->log_enabled(ctx_, static_cast<int32_t>(level)) != 0;
  }
  void log(LogLevel level, std::string_view msg) const noexcept {
    if (api_ && api_->log) api_->log(ctx_, static_cast<int32_t>(level), msg.data(), msg.size());
  }
  // Define a metric (constructor only). Returns an id for record(), or -1.
  int32_t define_metric(MetricKind kind, const char* name, const char* help) const noexcept {
    return api_ && api_->metric_define ? api_->metric_define(ctx_, static_cast<int32_t>(kind), name, help) : -1;
  }
  void record(int32_t metric_id, double value) const noexcept {
    if (api_ && api_->metric_record && metric_id >= 0) api_->metric_record(ctx_, metric_id, value);
  }

 private:
  const kubetrail_host_api* api_ = nullptr;
  void* ctx_ = nullptr;
};

// What handle() returns. Per-item statuses are optional (partial success).
struct Result {
  Status status = Status::ok;
  uint32_t retry_after_ms = 0;
  std::string message;              // for retry/fail: shown in the host's log
  std::vector<Status> item_status;  // empty, or one entry per batch item

  static Result ok() { return {}; }
  static Result stop() { return {Status::stop, 0, {}, {}}; }
  static Result retry(std::string msg, uint32_t after_ms = 0) { return {Status::retry, after_ms, std::move(msg), {}}; }
  static Result fail(std::string msg) { return {Status::fail, 0, std::move(msg), {}}; }
};

// Throw from handle() to report a transient problem (RETRY, after
// retry_after_ms when given), or from the constructor (create answers RETRY
// and the host creates the handler again with its retry policy). Any other
// exception is a permanent failure (FAIL) with its what() as message.
class RetryableError : public std::runtime_error {
 public:
  explicit RetryableError(const std::string& what, uint32_t retry_after_ms = 0)
      : std::runtime_error(what), retry_after_ms_(retry_after_ms) {}
  uint32_t retry_after_ms() const noexcept { return retry_after_ms_; }

 private:
  uint32_t retry_after_ms_;
};

// Base class of a plugin instance. Derive, give it a constructor
// (std::string_view config_json, Host host), and override handle().
class Plugin {
 public:
  explicit Plugin(Host host) noexcept : host_(host) {}
  virtual ~Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  virtual Result handle(const Batch& batch) = 0;
  virtual Result flush(uint32_t /*kubetrail_flush_reason*/) { return Result::ok(); }

  const Host& host() const noexcept { return host_; }

 private:
  Host host_;
};

namespace detail {

inline void set_error(kubetrail_error* err, std::string_view msg) noexcept {
  if (!err || !err->message || err->capacity == 0) return;
  size_t n = msg.size() < err->capacity - 1 ? msg.size() : err->capacity - 1;
  std::char_traits<char>::copy(err->message, msg.data(), n);
  err->message[n] = '\0';
}

template <class T>
int32_t create(const char* config, size_t len, const kubetrail_host_api* api, void* ctx, void** out,
               kubetrail_error* err) noexcept {
  try {
    *out = static_cast<Plugin*>(new T(std::string_view(config, len), Host(api, ctx)));
    return KUBETRAIL_OK;
  } catch (const RetryableError& e) {
    set_error(err, e.what());
    return KUBETRAIL_RETRY;  // the host creates it again with the handler's retry policy
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown exception in plugin constructor");
  }
  return KUBETRAIL_FAIL;
}

inline void destroy(void* instance) noexcept { delete static_cast<Plugin*>(instance); }

inline int32_t finish(const Result& r, kubetrail_batch_result* result, kubetrail_error* err) noexcept {
  if (result) {
    result->retry_after_ms = r.retry_after_ms;
    if (result->item_status)
      for (size_t i = 0; i < r.item_status.size() && i < result->item_count; ++i)
        result->item_status[i] = static_cast<int32_t>(r.item_status[i]);
  }
  if (!r.message.empty()) set_error(err, r.message);
  return static_cast<int32_t>(r.status);
}

inline int32_t handle_batch(void* instance, const kubetrail_batch* batch, kubetrail_batch_result* result,
                            kubetrail_error* err) noexcept {
  try {
    return finish(static_cast<Plugin*>(instance)->handle(Batch(batch)), result, err);
  } catch (const RetryableError& e) {
    if (result) result->retry_after_ms = e.retry_after_ms();
    set_error(err, e.what());
    return KUBETRAIL_RETRY;
  } catch (const std::bad_alloc&) {
    set_error(err, "out of memory");
    return KUBETRAIL_RETRY;
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown exception in handle()");
  }
  return KUBETRAIL_FAIL;
}

inline int32_t flush(void* instance, uint32_t reason, kubetrail_error* err) noexcept {
  try {
    return finish(static_cast<Plugin*>(instance)->flush(reason), nullptr, err);
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown exception in flush()");
  }
  return KUBETRAIL_FAIL;
}

// A host serves this plugin when its major matches and its minor is at least
// the one the plugin was built with.
inline bool host_can_serve(uint32_t host_major, uint32_t host_minor) noexcept {
  const uint32_t needed_minor = KUBETRAIL_ABI_MINOR;  // a variable: avoids "always false" warnings at minor 0
  return host_major == KUBETRAIL_ABI_MAJOR && host_minor >= needed_minor;
}

template <class T>
constexpr kubetrail_plugin_descriptor make_descriptor(const char* name, const char* version, const char* description,
                                                      const char* schema, uint64_t caps, uint32_t threading) noexcept {
  static_assert(std::is_base_of_v<Plugin, T>,
                "KUBETRAIL_PLUGIN: the plugin class must derive from kubetrail::sdk::Plugin");
  static_assert(std::is_constructible_v<T, std::string_view, Host>,
                "KUBETRAIL_PLUGIN: the plugin class needs a public constructor "
                "T(std::string_view config_json, kubetrail::sdk::Host host)");
  kubetrail_plugin_descriptor d{};
  d.struct_size = sizeof(kubetrail_plugin_descriptor);
  d.abi_major = KUBETRAIL_ABI_MAJOR;
  d.abi_minor = KUBETRAIL_ABI_MINOR;
  d.threading = threading;
  d.capabilities = caps | KUBETRAIL_CAP_FLUSH;
  d.name = name;
  d.version = version;
  d.description = description;
  d.config_schema = schema;
  d.create = &create<T>;
  d.destroy = &destroy;
  d.handle_batch = &handle_batch;
  d.flush = &flush;
  return d;
}

}  // namespace detail
}  // namespace kubetrail::sdk

// Emits the descriptor and the entry symbol for plugin class CLASS. Use once
// per shared object, at namespace scope. KUBETRAIL_PLUGIN_EX also takes the
// capability bits and threading mode.
#define KUBETRAIL_PLUGIN_EX(CLASS, NAME, VERSION, DESCRIPTION, SCHEMA, CAPS, THREADING)                        \
  extern "C" KUBETRAIL_EXPORT const kubetrail_plugin_descriptor* kubetrail_plugin_entry_v1(uint32_t major,     \
                                                                                           uint32_t minor) {   \
    static const kubetrail_plugin_descriptor descriptor =                                                      \
        ::kubetrail::sdk::detail::make_descriptor<CLASS>(NAME, VERSION, DESCRIPTION, SCHEMA, CAPS, THREADING); \
    if (!::kubetrail::sdk::detail::host_can_serve(major, minor)) return nullptr;                               \
    return &descriptor;                                                                                        \
  }

#define KUBETRAIL_PLUGIN(CLASS, NAME, VERSION, DESCRIPTION, SCHEMA) \
  KUBETRAIL_PLUGIN_EX(CLASS, NAME, VERSION, DESCRIPTION, SCHEMA, 0u, KUBETRAIL_THREADING_SERIAL)
