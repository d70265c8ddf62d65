#include "plugin/plugin_host.hpp"

#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cassert>
#include <cstring>
#include <fstream>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "common/error.hpp"

namespace kubetrail::plugin {

namespace fs = std::filesystem;

struct PluginLibrary::Schema {
  valijson::Schema schema;
  nlohmann::json doc;  // the schema as JSON: an enum's allowed values for messages
};

PluginLibrary::~PluginLibrary() = default;

namespace {

constexpr size_t kErrorCapacity = 1024;

// Required members must lie inside the struct_size the plugin declared.
template <class M>
bool inside(const kubetrail_plugin_descriptor& d, size_t offset, M) {
  return d.struct_size >= offset + sizeof(M);
}
#define KT_INSIDE(d, member) inside(d, offsetof(kubetrail_plugin_descriptor, member), d.member)

std::string read_magic(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[4] = {};
  in.read(buf, 4);
  return std::string(buf, static_cast<size_t>(in.gcount()));
}

}  // namespace

std::shared_ptr<const PluginLibrary> PluginLibrary::load(const fs::path& path) {
  const std::string where = "plugin " + path.string() + ": ";
  std::error_code fec;
  if (!fs::exists(path, fec)) throw Error(where + "no such file");
  if (!fs::is_regular_file(path, fec)) throw Error(where + "not a regular file");
  if (read_magic(path) !=
      "\x7f"
      "ELF")
    throw Error(where + "not a shared object (no ELF header)");

  // RTLD_NODELETE: never unloaded, even if the handle is closed (Go/Rust
  // runtimes and TLS destructors do not survive dlclose).
  auto mode = static_cast<boost::dll::load_mode::type>(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  boost::dll::fs::error_code ec;
  dlerror();
  boost::dll::shared_library lib(boost::dll::fs::path(fs::absolute(path).string()), mode, ec);
  if (ec || !lib.is_loaded()) {
    const char* why = dlerror();
    throw Error(where + "cannot be loaded: " + (why ? why : ec.message()));
  }
  if (!lib.has(KUBETRAIL_PLUGIN_ENTRY_V1_SYMBOL))
    throw Error(where + "not a kubetrail plugin: it does not export " KUBETRAIL_PLUGIN_ENTRY_V1_SYMBOL
                        " (built for another ABI major version, or not exported: check -fvisibility)");
  auto entry = lib.get<const kubetrail_plugin_descriptor*(uint32_t, uint32_t)>(KUBETRAIL_PLUGIN_ENTRY_V1_SYMBOL);
  const kubetrail_plugin_descriptor* d = entry(KUBETRAIL_ABI_MAJOR, KUBETRAIL_ABI_MINOR);
  if (!d)
    throw Error(where + "refused this host (host ABI " + std::to_string(KUBETRAIL_ABI_MAJOR) + "." +
                std::to_string(KUBETRAIL_ABI_MINOR) + ")");

  std::shared_ptr<PluginLibrary> p(new PluginLibrary());
  // Copy into a zeroed descriptor of our size: members a shorter (older)
  // descriptor lacks stay NULL/0.
  if (d->struct_size < offsetof(kubetrail_plugin_descriptor, name))
    throw Error(where + "descriptor too small (struct_size " + std::to_string(d->struct_size) + ")");
  std::memcpy(&p->desc_, d, std::min<size_t>(d->struct_size, sizeof(kubetrail_plugin_descriptor)));
  const auto& desc = p->desc_;
  std::string abi = std::to_string(desc.abi_major) + "." + std::to_string(desc.abi_minor);
  std::string host_abi = std::to_string(KUBETRAIL_ABI_MAJOR) + "." + std::to_string(KUBETRAIL_ABI_MINOR);
  if (desc.abi_major != KUBETRAIL_ABI_MAJOR)
    throw Error(where + "built for plugin ABI " + abi + ", this kubetrail speaks ABI " + host_abi +
                " (major versions must match)");
  if (desc.abi_minor > KUBETRAIL_ABI_MINOR)
    throw Error(where + "built for plugin ABI " + abi + ", newer than this kubetrail's ABI " + host_abi +
                " (upgrade kubetrail or rebuild the plugin against an older SDK)");
  if (!KT_INSIDE(desc, create) || !desc.create || !KT_INSIDE(desc, destroy) || !desc.destroy ||
      !KT_INSIDE(desc, handle_batch) || !desc.handle_batch)
    throw Error(where + "descriptor lacks a required function (create, destroy, handle_batch)");
  if (!desc.name || !*desc.name) throw Error(where + "descriptor has no name");

  p->info_.path = fs::absolute(path).string();
  p->info_.name = desc.name;
  p->info_.version = desc.version ? desc.version : "";
  p->info_.description = desc.description ? desc.description : "";
  p->info_.abi_major = desc.abi_major;
  p->info_.abi_minor = desc.abi_minor;
  p->info_.threading = desc.threading;
  p->info_.capabilities = desc.capabilities;
  if (KT_INSIDE(desc, config_schema) && desc.config_schema) {
    p->info_.config_schema = desc.config_schema;
    auto doc = nlohmann::json::parse(p->info_.config_schema, nullptr, false);
    if (doc.is_discarded()) throw Error(where + "its config schema is not valid JSON");
    p->schema_ = std::make_unique<Schema>();
    try {
      valijson::SchemaParser parser;
      valijson::adapters::NlohmannJsonAdapter adapter(doc);
      parser.populateSchema(adapter, p->schema_->schema);
      p->schema_->doc = doc;
    } catch (const std::exception& e) {
      throw Error(where + "its config schema is not a valid JSON Schema: " + e.what());
    }
  }
  // Keep the handle forever: with RTLD_NODELETE the code stays mapped anyway,
  // and this keeps the dlopen reference count honest.
  static std::vector<boost::dll::shared_library> keep_alive;
  keep_alive.push_back(std::move(lib));
  return p;
}

void PluginLibrary::validate_config(const nlohmann::json& config, std::string_view context) const {
  std::string prefix(context);
  if (!schema_) {
    if (!config.empty()) throw Error(prefix + ": plugin \"" + info_.name + "\" takes no config, but config has keys");
    return;
  }
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(config);
  if (validator.validate(schema_->schema, target, &results)) return;
  // valijson reports each failure at every level ("failed to validate
  // against schema associated with property 'path'" and, deeper, what was
  // wrong with it); the deepest error names the key and is the useful one.
  valijson::ValidationResults::Error err, e;
  while (results.popError(e))
    if (e.context.size() > err.context.size()) err = e;
  std::string key = "config";
  const nlohmann::json* at = &schema_->doc;  // the failing key's schema, followed along (null once lost)
  for (const auto& c : err.context) {
    if (c == "<root>") continue;
    if (c.size() > 2 && c.front() == '[' && c.back() == ']') {
      std::string inner = c.substr(1, c.size() - 2);
      bool index = !inner.empty() && inner.find_first_not_of("0123456789") == std::string::npos;
      key += index ? c : "." + inner;
      if (at && index && at->contains("items"))
        at = &(*at)["items"];
      else if (at && !index && at->contains("properties") && (*at)["properties"].contains(inner))
        at = &(*at)["properties"][inner];
      else
        at = nullptr;
    } else {
      key += "." + c;
      at = nullptr;
    }
  }
  std::string why = err.description;
  if (at && at->is_object() && at->contains("enum") && (*at)["enum"].is_array()) {
    why += " (allowed:";
    for (const auto& v : (*at)["enum"]) why += " " + v.dump();
    why += ")";
  }
  throw Error(prefix + ": key \"" + key + "\": " + why);
}

fs::path resolve_plugin(std::string_view plugin, const fs::path& dir) {
  std::string p(plugin);
  if (p.find('/') != std::string::npos || p.ends_with(".so")) return fs::path(p);
  return dir / (p + ".so");
}

fs::path default_plugin_dir() {
  boost::dll::fs::error_code ec;
  fs::path exe = boost::dll::program_location(ec).string();
  if (ec) return fs::path("/usr/lib/kubetrail/plugins");
  fs::path bin = exe.parent_path();
  for (fs::path candidate : {bin / "plugins", bin.parent_path() / "lib" / "kubetrail" / "plugins",
                             bin.parent_path() / "lib64" / "kubetrail" / "plugins"}) {
    std::error_code e;
    if (fs::is_directory(candidate, e)) return candidate;
  }
  return fs::path("/usr/lib/kubetrail/plugins");
}

std::shared_ptr<const PluginLibrary> PluginLoader::load(std::string_view plugin) {
  fs::path path = resolve_plugin(plugin, dir_);
  std::error_code ec;
  fs::path key = fs::weakly_canonical(path, ec);
  std::string k = ec ? path.string() : key.string();
  if (auto it = loaded_.find(k); it != loaded_.end()) return it->second;
  auto lib = PluginLibrary::load(path);
  loaded_.emplace(k, lib);
  return lib;
}

// ---------------------------------------------------------------------------
// ABI views
// ---------------------------------------------------------------------------
namespace {
kubetrail_str str(const std::string& s) noexcept { return {s.c_str(), s.size()}; }
}  // namespace

static_assert(model::ChangeSet::kJsonPadding >= 1 + KUBETRAIL_JSON_PADDING,
              "a rendered change set is the JSON, its terminating zero and the ABI's padding");

AbiChangeSet::AbiChangeSet(const model::ChangeSet& cs) : cs_(cs), json_(cs.rendering()) {
  // Made once where the change set was found (ChangeSet::render); a change
  // made to it after would reach plugins stale.
  assert(!cs.rendered || cs.json() == cs.to_json());
  const std::string_view json = model::ChangeSet::text_of(*json_);

  changes_.reserve(cs.changes.size());
  for (const auto& c : cs.changes) {
    kubetrail_field_change f{};
    f.struct_size = sizeof f;
    f.op = static_cast<uint32_t>(c.op);
    f.path = str(c.path);
    f.old_json = str(c.old_json);
    f.new_json = str(c.new_json);
    changes_.push_back(f);
  }
  for (const auto& f : changes_) change_ptrs_.push_back(&f);

  view_.struct_size = sizeof view_;
  view_.type = static_cast<uint32_t>(cs.type);
  view_.id = str(cs.id);
  view_.cluster = str(cs.cluster);
  view_.group = str(cs.resource.group);
  view_.version = str(cs.resource.version);
  view_.resource = str(cs.resource.resource);
  view_.kind = str(cs.resource.kind);
  view_.object_namespace = str(cs.object_namespace);
  view_.name = str(cs.name);
  view_.uid = str(cs.uid);
  view_.resource_version = str(cs.resource_version);
  view_.summary = str(cs.summary);
  view_.observed_at = str(cs.observed_at);
  view_.changes = change_ptrs_.data();
  view_.change_count = change_ptrs_.size();
  view_.json = {json.data(), json.size()};
  if (cs.actor) {
    view_.actor_manager = str(cs.actor->manager);
    view_.actor_operation = str(cs.actor->operation);
    view_.actor_time = str(cs.actor->time);
  }
  view_.catch_up = cs.catch_up ? 1 : 0;
  view_.old_object = str(cs.old_object);
  view_.new_object = str(cs.new_object);
  if (cs.snapshot) {
    view_.snapshot_id = str(cs.snapshot->id);
    view_.snapshot_index = cs.snapshot->index;
    view_.snapshot_total = cs.snapshot->total;
  }
}

// ---------------------------------------------------------------------------
// Handler instances and the host services they get
// ---------------------------------------------------------------------------
struct Handler::Context {
  std::string handler;
  std::string plugin;
  Metrics* metrics = nullptr;
  bool in_create = false;
};

namespace {

spdlog::level::level_enum to_spdlog(int32_t level) {
  switch (level) {
    case KUBETRAIL_LOG_TRACE: return spdlog::level::trace;
    case KUBETRAIL_LOG_DEBUG: return spdlog::level::debug;
    case KUBETRAIL_LOG_INFO: return spdlog::level::info;
    case KUBETRAIL_LOG_WARN: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

void host_log(void* ctx, int32_t level, const char* msg, size_t len) {
  auto* c = static_cast<Handler::Context*>(ctx);
  spdlog::log(to_spdlog(level), "handler \"{}\": {}", c->handler, std::string_view(msg ? msg : "", msg ? len : 0));
}

int32_t host_log_enabled(void*, int32_t level) { return spdlog::should_log(to_spdlog(level)) ? 1 : 0; }

int32_t host_metric_define(void* ctx, int32_t kind, const char* name, const char* help) {
  auto* c = static_cast<Handler::Context*>(ctx);
  if (!c->metrics || !name || !c->in_create) return -1;
  MetricKind k = kind == KUBETRAIL_METRIC_GAUGE       ? MetricKind::gauge
                 : kind == KUBETRAIL_METRIC_HISTOGRAM ? MetricKind::histogram
                                                      : MetricKind::counter;
  return c->metrics->define(k, std::string("kubetrail_plugin_") + name, help ? help : "",
                            {{"handler", c->handler}, {"plugin", c->plugin}});
}

void host_metric_record(void* ctx, int32_t id, double value) {
  auto* c = static_cast<Handler::Context*>(ctx);
  if (c->metrics) c->metrics->record(id, value);
}

const kubetrail_host_api kHostApi = {sizeof(kubetrail_host_api), host_log, host_log_enabled, host_metric_define,
                                     host_metric_record};

}  // namespace

std::string_view status_name(int32_t status) noexcept {
  switch (status) {
    case KUBETRAIL_OK: return "ok";
    case KUBETRAIL_RETRY: return "retry";
    case KUBETRAIL_FAIL: return "fail";
    case KUBETRAIL_STOP: return "stop";
    default: return "invalid";
  }
}

Handler::Handler(std::string name, std::shared_ptr<const PluginLibrary> lib, const nlohmann::json& config,
                 Metrics* metrics)
    : name_(std::move(name)), lib_(std::move(lib)), ctx_(std::make_unique<Context>()) {
  std::string context = "handler \"" + name_ + "\" (plugin " + lib_->info().name + ")";
  lib_->validate_config(config, context);
  ctx_->handler = name_;
  ctx_->plugin = lib_->info().name;
  ctx_->metrics = metrics;
  std::string text = config.dump();
  char buf[kErrorCapacity] = {};
  kubetrail_error err{sizeof(kubetrail_error), buf, sizeof buf};
  ctx_->in_create = true;
  int32_t rc = lib_->descriptor().create(text.c_str(), text.size(), &kHostApi, ctx_.get(), &instance_, &err);
  ctx_->in_create = false;
  if (rc != KUBETRAIL_OK || !instance_) {
    instance_ = nullptr;
    std::string why = context + ": create failed: " + (buf[0] ? std::string(buf) : "no reason given");
    if (rc == KUBETRAIL_RETRY) throw TransientCreateError(why + " (transient)");
    throw Error(why);
  }
}

Handler::~Handler() {
  if (instance_) lib_->descriptor().destroy(instance_);
}

Outcome Handler::deliver(std::span<const AbiChangeSet* const> items) {
  std::vector<const kubetrail_change_set*> views;
  views.reserve(items.size());
  for (const auto* i : items) views.push_back(i->view());
  kubetrail_batch batch{sizeof(kubetrail_batch), views.data(), views.size()};
  Outcome out;
  out.item_status.assign(items.size(), KUBETRAIL_ITEM_UNSET);
  kubetrail_batch_result result{sizeof(kubetrail_batch_result), 0, out.item_status.data(), out.item_status.size()};
  char buf[kErrorCapacity] = {};
  kubetrail_error err{sizeof(kubetrail_error), buf, sizeof buf};
  int32_t rc = lib_->descriptor().handle_batch(instance_, &batch, &result, &err);
  buf[sizeof buf - 1] = '\0';  // a careless plugin must not make us read past the buffer
  if (rc < KUBETRAIL_OK || rc > KUBETRAIL_STOP) {
    out.message = "plugin returned an unknown status " + std::to_string(rc);
    rc = KUBETRAIL_FAIL;
  } else {
    out.message = buf;
  }
  out.status = rc;
  out.retry_after_ms = result.retry_after_ms;
  for (auto& s : out.item_status)
    if (s < KUBETRAIL_OK || s > KUBETRAIL_STOP) s = rc;
  return out;
}

Outcome Handler::flush(uint32_t reason) {
  Outcome out;
  const auto& d = lib_->descriptor();
  if (!KT_INSIDE(d, flush) || !d.flush) return out;
  char buf[kErrorCapacity] = {};
  kubetrail_error err{sizeof(kubetrail_error), buf, sizeof buf};
  out.status = d.flush(instance_, reason, &err);
  buf[sizeof buf - 1] = '\0';
  out.message = buf;
  return out;
}

}  // namespace kubetrail::plugin
