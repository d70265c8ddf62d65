#include <algorithm>
#include <array>

#include "common/json_writer.hpp"
#include "diff/actor.hpp"
#include "diff/diff.hpp"  // ChangeDetector
#include "diff/json_values.hpp"
#include "diff/pruner.hpp"

namespace kubetrail::diff {

namespace dom = simdjson::dom;

namespace {

// Always noise (DESIGN.md): bookkeeping the API server or controllers bump on
// their own, or that duplicates what the diff already says.
constexpr std::array<std::string_view, 5> kNoisePaths{
    "metadata.resourceVersion",
    "metadata.managedFields",
    "metadata.generation",
    "metadata.annotations[\"kubectl.kubernetes.io/last-applied-configuration\"]",
    "metadata.annotations[\"deployment.kubernetes.io/revision\"]",
};

}  // namespace

void validate(const model::DiffOptions& options) {
  for (const auto& p : options.ignore_paths) model::PathPattern::parse(p);
  for (const auto& p : options.redact_paths) model::PathPattern::parse(p);
}

ChangeDetector::ChangeDetector(std::string cluster, model::DiffOptions options)
    : cluster_(std::move(cluster)), options_(std::move(options)) {
  validate(options_);
  if (options_.redaction_key.empty()) options_.redaction_key = random_redaction_key();
  // Fields in path order, as a change set read back from JSON has them.
  std::sort(options_.field_paths.begin(), options_.field_paths.end());
}

ChangeDetector::~ChangeDetector() = default;

uint64_t ChangeDetector::reparsed() const noexcept {
  uint64_t n = 0;
  for (const auto& [key, rules] : rules_) n += rules->reparsed();
  return n;
}

Pruner& ChangeDetector::rules_for(const model::ResourceType& type) {
  // An informer sees one type: the last one answers without building a key.
  if (last_rules_ && type.resource == last_type_.resource && type.group == last_type_.group &&
      type.version == last_type_.version)
    return *last_rules_;
  std::string key = type.qualified_name() + "/" + type.version;
  auto it = rules_.find(key);
  if (it != rules_.end()) {
    last_type_ = type;
    last_rules_ = it->second.get();
    return *it->second;
  }
  auto rules = std::make_unique<Pruner>(list_keys(type), options_.redaction_key);
  rules->identify(type.kind, type.group.empty() ? type.version : type.group + "/" + type.version);
  for (auto p : kNoisePaths) rules->add(p, Pruner::Action::drop);
  bool status_wanted = std::any_of(options_.include_status.begin(), options_.include_status.end(),
                                   [&](const std::string& n) { return type.named_by(n); });
  if (!status_wanted) rules->add("status", Pruner::Action::drop);
  for (const auto& p : options_.ignore_paths) rules->add(p, Pruner::Action::drop);
  if (type.group.empty() && type.resource == "secrets") {
    rules->add("data.*", Pruner::Action::redact);
    rules->add("stringData.*", Pruner::Action::redact);
  }
  for (const auto& p : options_.redact_paths) rules->add(p, Pruner::Action::redact);
  return *rules_.emplace(std::move(key), std::move(rules)).first->second;
}

ListKeys& ChangeDetector::list_keys_for(std::string_view group, std::string_view kind) {
  std::string key = std::string(group) + "/" + std::string(kind);
  auto it = list_keys_.find(key);
  if (it == list_keys_.end()) it = list_keys_.emplace(std::move(key), std::make_unique<ListKeys>()).first;
  return *it->second;
}

const ListKeys& ChangeDetector::list_keys(const model::ResourceType& type) {
  return list_keys_for(type.group, type.kind);
}

bool ChangeDetector::learn_openapi(const model::ResourceType& type, dom::element document) {
  return list_keys_for(type.group, type.kind).learn_openapi(document, type.group, type.version, type.kind);
}

bool ChangeDetector::learn_crd(dom::element crd) {
  std::string_view group, kind;
  if (crd.at_pointer("/spec/group").get(group) != simdjson::SUCCESS ||
      crd.at_pointer("/spec/names/kind").get(kind) != simdjson::SUCCESS)
    return false;
  ListKeys& keys = list_keys_for(group, kind);
  bool learned = false;
  dom::array versions;
  if (crd.at_pointer("/spec/versions").get(versions) == simdjson::SUCCESS) {
    for (dom::element v : versions) {  // v1: a schema per version; their lists agree in practice
      dom::element schema;
      if (v.at_pointer("/schema/openAPIV3Schema").get(schema) == simdjson::SUCCESS) {
        keys.learn_schema(schema);
        learned = true;
      }
    }
  }
  dom::element schema;  // v1beta1: one schema for all versions
  if (crd.at_pointer("/spec/validation/openAPIV3Schema").get(schema) == simdjson::SUCCESS) {
    keys.learn_schema(schema);
    learned = true;
  }
  return learned;
}

namespace {
// The cached form of an object, but for its text and managers (see
// ObjectStore::put).
model::StoredObject stored_object(dom::element object) {
  model::StoredObject stored;
  dom::element metadata;  // an object without metadata (a hand-written manifest) has no uid or version
  if (object.type() == dom::element_type::OBJECT && object["metadata"].get(metadata) == simdjson::SUCCESS &&
      metadata.type() == dom::element_type::OBJECT) {
    stored.uid = string_at(metadata, "uid");
    stored.resource_version = string_at(metadata, "resourceVersion");
  }
  return stored;
}
// Keeps the two largest of the members `rules`' last prune copied as they
// were (Pruner::verbatim()): a Pod's spec and status.
void remember_verbatim(const Pruner& rules, model::StoredObject& o) {
  o.verbatim = {};
  for (const auto& [offset, size] : rules.verbatim()) {
    auto& smaller = o.verbatim[0].size <= o.verbatim[1].size ? o.verbatim[0] : o.verbatim[1];
    if (size > smaller.size) smaller = {offset, size};
  }
}
// An Event's change set says what happened - "Warning BackOff on Pod
// shop/web-1: Back-off restarting failed container (4 times)" - not only
// "count: 3 -> 4". core/v1 and events.k8s.io/v1 name the same things
// differently (message/note, involvedObject/regarding, count/series.count).
bool is_event(const model::ResourceType& type) {
  return type.resource == "events" && (type.group.empty() || type.group == "events.k8s.io");
}

// Text from an object on one line, at most `max` bytes (cut on a UTF-8
// boundary): an Event's message is whatever its reporter wrote.
void append_line(std::string& out, std::string_view text, size_t max) {
  const std::string_view kept = utf8_prefix(text, max);
  for (char c : kept) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  if (kept.size() < text.size()) out.append("...");
}

std::string event_summary(dom::element event, bool core_v1, const model::ChangeSet& cs) {
  constexpr size_t kField = 128, kMessage = 240;
  std::string out = "Event ";
  if (!cs.object_namespace.empty()) out.append(cs.object_namespace).append("/");
  out.append(cs.name).append(": ");
  for (const char* key : {"type", "reason"}) {
    std::string v = string_at(event, key);
    if (v.empty()) continue;
    append_line(out, v, kField);
    out.push_back(' ');
  }
  dom::element about;
  if (event[core_v1 ? "involvedObject" : "regarding"].get(about) == simdjson::SUCCESS) {
    std::string kind = string_at(about, "kind"), ns = string_at(about, "namespace"), name = string_at(about, "name");
    if (!name.empty()) {
      out.append("on ");
      if (!kind.empty()) {
        append_line(out, kind, kField);
        out.push_back(' ');
      }
      if (!ns.empty()) {
        append_line(out, ns, kField);
        out.push_back('/');
      }
      append_line(out, name, kField);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  std::string message = string_at(event, core_v1 ? "message" : "note");
  if (!message.empty()) {
    out.append(": ");
    append_line(out, message, kMessage);
  }
  int64_t count = 0;
  dom::element series;
  if (core_v1) {
    if (event["count"].get(count) != simdjson::SUCCESS) count = 0;
  } else if (event["series"].get(series) == simdjson::SUCCESS) {
    if (series["count"].get(count) != simdjson::SUCCESS) count = 0;
  }
  if (count > 1) out.append(" (").append(std::to_string(count)).append(" times)");
  return out;
}

// The values of `paths` in `pruned` (ChangeSet::fields): read from the
// object as kubetrail keeps it - pruned and redacted, so a route cannot
// carry a Secret's value into a change set. A string as it is, a number or
// bool as JSON; absent, null, an object or a list: left out.
void read_fields(simdjson::dom::parser& parser, std::string_view pruned, const std::vector<std::string>& paths,
                 std::vector<std::pair<std::string, std::string>>& out) {
  constexpr size_t kMaxValue = 1024;  // a value to route on, not a payload
  dom::element doc;
  if (paths.empty() || parser.parse(pruned.data(), pruned.size()).get(doc) != simdjson::SUCCESS) return;
  for (const auto& path : paths) {
    dom::element e = doc;
    bool found = true;
    for (size_t i = 0; found && i < path.size();) {
      size_t dot = std::min(path.find('.', i), path.size());
      dom::element child;
      found = e.type() == dom::element_type::OBJECT &&
              e[std::string_view(path).substr(i, dot - i)].get(child) == simdjson::SUCCESS;
      e = child;
      i = dot + 1;
    }
    if (!found) continue;
    std::string value;
    std::string_view s;
    switch (e.type()) {
      case dom::element_type::STRING:
        if (e.get(s) != simdjson::SUCCESS) continue;
        value.assign(utf8_prefix(s, kMaxValue));
        break;
      case dom::element_type::INT64:
      case dom::element_type::UINT64:
      case dom::element_type::DOUBLE:
      case dom::element_type::BOOL: append_json(e, value); break;
      default: continue;
    }
    out.emplace_back(path, std::move(value));
  }
}
}  // namespace

model::StoredObject ChangeDetector::prune(const model::ResourceType& type, dom::element object,
                                          const SourceText* source) {
  model::StoredObject stored = stored_object(object);
  extract_managers(object, stored.managers);
  stored.json.assign(rules_for(type).prune(object, source, false));  // stored, not diffed: no containers recorded
  return stored;
}

Result<bool> ChangeDetector::seed(const model::ResourceType& type, dom::element object, model::ObjectStore& store,
                                  const SourceText* source) {
  dom::element metadata;
  if (object.type() != dom::element_type::OBJECT || object["metadata"].get(metadata) != simdjson::SUCCESS)
    return Result<bool>::failure("object has no metadata");
  std::string name = string_at(metadata, "name");
  if (name.empty()) return Result<bool>::failure("object has no metadata.name");
  extract_managers(object, managers_);
  Pruner& rules = rules_for(type);
  const std::string_view pruned = rules.prune(object, source, false);  // nothing to diff against
  model::StoredObject stored = stored_object(object);
  remember_verbatim(rules, stored);
  store.put(model::ObjectStore::key_of(string_at(metadata, "namespace"), name), std::move(stored), pruned, &managers_);
  return true;
}

model::ChangeSet ChangeDetector::of_cached(model::ChangeType change, const model::ResourceType& type,
                                           std::string_view store_key, const model::StoredObject& cached,
                                           std::string_view observed_at) const {
  model::ChangeSet cs;
  cs.type = change;
  cs.cluster = cluster_;
  cs.observed_at.assign(observed_at);
  cs.resource = type;
  auto slash = store_key.find('/');
  cs.object_namespace.assign(store_key.substr(0, slash));
  cs.name.assign(store_key.substr(slash + 1));
  cs.uid = cached.uid;
  cs.resource_version = cached.resource_version;
  return cs;
}

std::optional<model::ChangeSet> ChangeDetector::forget(const model::ResourceType& type, std::string_view store_key,
                                                       model::ObjectStore& store, std::string_view observed_at,
                                                       std::string_view list_rv) {
  const model::StoredObject* old = store.find(store_key);
  if (!old) return std::nullopt;
  model::ChangeSet cs = of_cached(model::ChangeType::deleted, type, store_key, *old, observed_at);
  cs.resource_version.assign(list_rv);
  cs.id = model::change_set_id(cluster_, cs.type, cs.uid, cs.object_namespace, cs.name, cs.resource_version);
  cs.old_object = store.text(*old);
  read_fields(fields_parser_, cs.old_object, options_.field_paths, cs.fields);
  cs.summary = model::summarize(cs);
  store.erase(store_key);
  ++stats_.change_sets;
  return cs;
}

std::optional<model::ChangeSet> ChangeDetector::snapshot(const model::ResourceType& type, std::string_view store_key,
                                                         const model::ObjectStore& store,
                                                         std::string_view observed_at) {
  const model::StoredObject* o = store.find(store_key);
  if (!o) return std::nullopt;
  model::ChangeSet cs = of_cached(model::ChangeType::snapshot, type, store_key, *o, observed_at);
  cs.new_object = store.text(*o);
  read_fields(fields_parser_, cs.new_object, options_.field_paths, cs.fields);
  return cs;
}

Result<std::optional<model::ChangeSet>> ChangeDetector::observe(model::WatchEventType event,
                                                                const model::ResourceType& type, dom::element object,
                                                                model::ObjectStore& store, std::string_view observed_at,
                                                                const SourceText* source) {
  using R = Result<std::optional<model::ChangeSet>>;
  ++stats_.events;
  dom::element metadata;
  if (object.type() != dom::element_type::OBJECT || object["metadata"].get(metadata) != simdjson::SUCCESS ||
      metadata.type() != dom::element_type::OBJECT)
    return R::failure("object has no metadata");
  std::string_view name, ns;
  if (metadata["name"].get(name) != simdjson::SUCCESS || name.empty()) return R::failure("object has no metadata.name");
  if (metadata["namespace"].get(ns) != simdjson::SUCCESS) ns = {};
  std::string_view rv;
  if (metadata["resourceVersion"].get(rv) != simdjson::SUCCESS) rv = {};
  model::ObjectStore::key_of(ns, name, key_);
  const std::string& key = key_;
  model::StoredObject* old = store.find_mutable(key);

  if (event != model::WatchEventType::deleted && old && !rv.empty() && rv == old->resource_version) {
    ++stats_.redeliveries;
    return std::optional<model::ChangeSet>{};
  }
  Pruner& rules = rules_for(type);
  std::string_view pruned = rules.prune(object, source);
  if (event != model::WatchEventType::deleted && old && store.same_text(*old, pruned)) {
    // Status or bookkeeping churn, most events in a cluster: only the
    // resourceVersion and the managers move, updated in place.
    old->resource_version.assign(rv);
    extract_managers(object, managers_);
    store.set_managers(*old, managers_);
    ++stats_.noise;
    return std::optional<model::ChangeSet>{};
  }
  std::string_view uid;
  if (metadata["uid"].get(uid) != simdjson::SUCCESS) uid = {};

  // Filled only once it is known to be one: most events are noise.
  model::ChangeSet cs;
  auto identify = [&] {
    cs.cluster = cluster_;
    cs.observed_at.assign(observed_at);
    cs.resource = type;
    cs.object_namespace.assign(ns);
    cs.name.assign(name);
    cs.uid.assign(uid);
    cs.resource_version.assign(rv);
  };

  if (event == model::WatchEventType::deleted) {
    identify();
    cs.type = model::ChangeType::deleted;
    cs.old_object = pruned;
    store.erase(key);
  } else if (!old) {
    extract_managers(object, managers_);
    identify();
    cs.type = model::ChangeType::added;
    cs.actor = find_actor(nullptr, managers_);
    cs.new_object = pruned;
    model::StoredObject stored = stored_object(object);
    remember_verbatim(rules, stored);
    store.put(key, std::move(stored), pruned, &managers_);
  } else {
    // Diff only the subtree holding the changed bytes when there is one.
    // The old text, decompressed when the cache packs: valid until the
    // cache's next text() or the object's next change (update_cache below).
    const std::string_view old_text = store.text(*old);
    Pruner::Subtree where;
    if (whole_objects_ || !rules.changed_subtree(old_text, pruned, where, old_parser_)) {
      where = Pruner::Subtree{pruned, {}, {}, {}, false, {}};
      if (old_parser_.parse(old_text.data(), old_text.size()).get(where.old_value) != simdjson::SUCCESS)
        return R::failure("internal error: cached object is not valid JSON");  // cannot happen: we wrote it
    }
    dom::element b = where.new_value;
    if (!where.has_new_value &&
        new_parser_.parse(where.new_text.data(), where.new_text.size()).get(b) != simdjson::SUCCESS)
      return R::failure("internal error: pruned object is not valid JSON");
    differ_.diff(where.old_value, b, cs.changes, rules.keys(), where.path,
                 where.unchanged.root >= 0 ? &where.unchanged : nullptr);
    // The cached object becomes the new one in place: its strings keep
    // their storage (the DOMs diffed above own copies of their text).
    extract_managers(object, managers_);
    auto update_cache = [&] {
      if (options_.include_objects) cs.old_object.assign(old_text);
      store.set_text(*old, pruned);
      remember_verbatim(rules, *old);
      old->uid.assign(uid);
      old->resource_version.assign(rv);
      store.set_managers(*old, managers_);
    };
    if (cs.changes.empty()) {  // e.g. a keyed list reordered
      ++stats_.noise;
      update_cache();
      return std::optional<model::ChangeSet>{};
    }
    identify();
    cs.type = model::ChangeType::modified;
    cs.actor = find_actor(&store.managers(*old), managers_, object, &cs.changes);
    update_cache();
    if (options_.include_objects) cs.new_object = pruned;
  }
  cs.id = model::change_set_id(cluster_, cs.type, uid, ns, name, rv);
  read_fields(fields_parser_, pruned, options_.field_paths, cs.fields);
  cs.summary = cs.type != model::ChangeType::deleted && is_event(type) ? event_summary(object, type.group.empty(), cs)
                                                                       : model::summarize(cs);
  ++stats_.change_sets;
  return std::optional<model::ChangeSet>{std::move(cs)};
}

void ChangeDetector::parse_event(const model::ResourceType& type, dom::parser& parser,
                                 simdjson::padded_string_view text, HollowParse& out, const model::ObjectStore* store) {
  if (is_event(type)) {  // event_summary() reads members an Event's pruning copies
    out.index.clear();
    out.regions.clear();
    out.known = 0;
    out.error = parser.parse(text).get(out.doc);
    return;
  }
  Pruner& rules = rules_for(type);
  // The cached version of the object, found by the names stage 1's index
  // gives (the DOM is not there yet), and its text: observe() reads the
  // same object and text next, from the store's last lookup and text().
  const model::StoredObject* cached = nullptr;
  std::string_view cached_text;
  bool looked = false;
  auto previous = [&](const Stage1& s1, uint32_t object, std::string_view member) -> std::string_view {
    if (!looked) {
      looked = true;
      const uint32_t metadata = s1.member(object, "metadata");
      const auto name = s1.plain_string(s1.member(metadata, "name"));
      if (!store || !name || name->empty()) return {};
      // A cluster-scoped object has no namespace: "". A wrong key only
      // finds no bytes to compare.
      model::ObjectStore::key_of(s1.plain_string(s1.member(metadata, "namespace")).value_or(""), *name, key_);
      cached = store->find(key_);
      if (cached && cached->verbatim[0].size + cached->verbatim[1].size > 0) cached_text = store->text(*cached);
    }
    if (!cached) return {};
    for (const auto& v : cached->verbatim) {
      // The member of that name, if it is one of these: `"name":` before it.
      if (v.size == 0 || size_t(v.offset) + v.size > cached_text.size() || v.offset < member.size() + 3) continue;
      const std::string_view before = cached_text.substr(v.offset - member.size() - 3, member.size() + 3);
      if (before.front() == '"' && before.substr(1, member.size()) == member && before.ends_with("\":"))
        return cached_text.substr(v.offset, v.size);
    }
    return {};
  };
  // metadata: read by observe(), stored_object(), the actor and the informer.
  parse_hollowed(
      parser, text, [&](std::string_view key) { return key != "metadata" && rules.opaque(key); }, previous, out);
}

std::optional<model::ChangeSet> ChangeDetector::replaced(const model::ResourceType& type, dom::element object,
                                                         model::ObjectStore& store, std::string_view observed_at) {
  dom::element metadata;
  if (object.type() != dom::element_type::OBJECT || object["metadata"].get(metadata) != simdjson::SUCCESS ||
      metadata.type() != dom::element_type::OBJECT)
    return std::nullopt;
  std::string_view name, ns, uid, rv;
  if (metadata["name"].get(name) != simdjson::SUCCESS || name.empty()) return std::nullopt;
  if (metadata["namespace"].get(ns) != simdjson::SUCCESS) ns = {};
  if (metadata["uid"].get(uid) != simdjson::SUCCESS || uid.empty()) return std::nullopt;
  if (metadata["resourceVersion"].get(rv) != simdjson::SUCCESS) rv = {};
  model::ObjectStore::key_of(ns, name, key_);
  const model::StoredObject* old = store.find(key_);
  if (!old || old->uid.empty() || old->uid == uid) return std::nullopt;
  return forget(type, key_, store, observed_at, rv);
}

}  // namespace kubetrail::diff
