// Change sets as JSON (schema kubetrail.dev/v1) and their one-line summary.
#include <simdjson.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/json_depth.hpp"
#include "common/json_writer.hpp"
#include "model/change_set.hpp"

namespace kubetrail::model {

using ordered_json = nlohmann::ordered_json;

std::string_view to_string(ChangeType t) noexcept {
  switch (t) {
    case ChangeType::added: return "Added";
    case ChangeType::deleted: return "Deleted";
    case ChangeType::snapshot: return "Snapshot";
    default: return "Modified";
  }
}

std::optional<ChangeType> parse_change_type(std::string_view s) noexcept {
  if (s == "Added") return ChangeType::added;
  if (s == "Modified") return ChangeType::modified;
  if (s == "Deleted") return ChangeType::deleted;
  if (s == "Snapshot") return ChangeType::snapshot;
  return std::nullopt;
}

std::string_view to_string(FieldOp op) noexcept {
  switch (op) {
    case FieldOp::add: return "add";
    case FieldOp::remove: return "remove";
    default: return "replace";
  }
}

std::string change_set_id(std::string_view cluster, ChangeType type, std::string_view uid, std::string_view ns,
                          std::string_view name, std::string_view resource_version) {
  std::string id;
  id.reserve(cluster.size() + uid.size() + resource_version.size() + 10);
  id.append(cluster).push_back('/');
  if (uid.empty()) {  // hand-written objects only: the API server gives every object a uid
    id.append(ns).push_back('/');
    id.append(name).push_back('/');
    id.append(resource_version);
    return id;
  }
  id.append(uid).push_back('/');
  // An object (a uid) is deleted once: its Deleted change set has one id
  // whether a watch saw the deletion or a relist found the object gone.
  id.append(type == ChangeType::deleted ? std::string_view("deleted") : resource_version);
  return id;
}

std::string snapshot_item_id(std::string_view cluster, std::string_view uid, std::string_view ns, std::string_view name,
                             std::string_view snapshot_id) {
  std::string id(cluster);
  id.push_back('/');
  if (uid.empty()) {
    id.append(ns).push_back('/');
    id.append(name);
  } else {
    id.append(uid);
  }
  id.append("/snapshot/").append(snapshot_id);
  return id;
}

namespace {
ordered_json parse_or_string(const std::string& text) {
  // Our own minified output: always valid; a failure would be a bug, but a
  // change set must still go out, so carry the text rather than throw.
  auto v = ordered_json::parse(text, nullptr, false);
  return v.is_discarded() ? ordered_json(text) : v;
}
}  // namespace

// The same document through nlohmann: for text that is not valid UTF-8,
// which nlohmann replaces (U+FFFD) and the direct writer below would copy.
std::string ChangeSet::to_json_checked() const {
  ordered_json j;
  j["schemaVersion"] = "kubetrail.dev/v1";
  j["id"] = id;
  j["cluster"] = cluster;
  j["type"] = std::string(to_string(type));
  j["observedAt"] = observed_at;
  j["resource"] = {{"group", resource.group},
                   {"version", resource.version},
                   {"resource", resource.resource},
                   {"kind", resource.kind}};
  if (!object_namespace.empty()) j["namespace"] = object_namespace;
  j["name"] = name;
  j["uid"] = uid;
  j["resourceVersion"] = resource_version;
  if (actor) {
    auto& a = j["actor"] = {{"manager", actor->manager}, {"operation", actor->operation}};
    if (!actor->time.empty()) a["time"] = actor->time;
  }
  if (catch_up) j["catchUp"] = true;
  if (snapshot) {
    auto& sn = j["snapshot"] = {{"id", snapshot->id}};
    if (!snapshot->handler.empty()) sn["handler"] = snapshot->handler;
    sn["index"] = snapshot->index;
    sn["total"] = snapshot->total;
  }
  j["summary"] = summary;
  auto& arr = j["changes"] = ordered_json::array();
  for (const auto& c : changes) {
    ordered_json e;
    e["op"] = std::string(to_string(c.op));
    e["path"] = c.path;
    if (!c.old_json.empty()) e["old"] = parse_or_string(c.old_json);
    if (!c.new_json.empty()) e["new"] = parse_or_string(c.new_json);
    arr.push_back(std::move(e));
  }
  if (!fields.empty()) {
    auto& f = j["fields"] = ordered_json::object();
    for (const auto& [k, v] : fields) f[k] = v;
  }
  if (!old_object.empty()) j["old"] = parse_or_string(old_object);
  if (!new_object.empty()) j["new"] = parse_or_string(new_object);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::shared_ptr<const std::string> ChangeSet::rendering() const {
  if (rendered) return rendered;
  auto text = std::make_shared<std::string>(to_json());
  text->append(kJsonPadding, '\0');  // within the room to_json() reserved for it: no copy
  return text;
}

std::string ChangeSet::to_json() const {
  // Written directly, the values spliced in as they are: old/new values and
  // objects are minified JSON the pruner wrote (or nlohmann re-dumped, for
  // a change set read back), so parsing them only to print them again cost
  // more than the rest of a change set (state_bench). Same keys, same order
  // as to_json_checked().
  std::string text;
  // Reserved once at about its size, the rendering's padding included
  // (rendering()): grown by doubling from nothing, 17 KB was allocated and
  // copied seven times over.
  size_t estimate = 1024 + kJsonPadding + id.size() + summary.size() + old_object.size() + new_object.size();
  for (const auto& c : changes) estimate += 64 + c.path.size() + c.old_json.size() + c.new_json.size();
  for (const auto& [k, v] : fields) estimate += 8 + k.size() + v.size();
  text.reserve(estimate);
  JsonOut out(text);
  auto str = [&](std::string_view k, std::string_view v) {  // keys are literals here: nothing to escape
    out.put(k);
    append_json_string(v, out);
  };
  out.put(R"({"schemaVersion":"kubetrail.dev/v1",)");
  str(R"("id":)", id);
  str(R"(,"cluster":)", cluster);
  str(R"(,"type":)", to_string(type));
  str(R"(,"observedAt":)", observed_at);
  str(R"(,"resource":{"group":)", resource.group);
  str(R"(,"version":)", resource.version);
  str(R"(,"resource":)", resource.resource);
  str(R"(,"kind":)", resource.kind);
  out.put('}');
  if (!object_namespace.empty()) str(R"(,"namespace":)", object_namespace);
  str(R"(,"name":)", name);
  str(R"(,"uid":)", uid);
  str(R"(,"resourceVersion":)", resource_version);
  if (actor) {
    str(R"(,"actor":{"manager":)", actor->manager);
    str(R"(,"operation":)", actor->operation);
    if (!actor->time.empty()) str(R"(,"time":)", actor->time);
    out.put('}');
  }
  if (catch_up) out.put(R"(,"catchUp":true)");
  if (snapshot) {
    str(R"(,"snapshot":{"id":)", snapshot->id);
    if (!snapshot->handler.empty()) str(R"(,"handler":)", snapshot->handler);
    out.put(R"(,"index":)");
    out.put(std::to_string(snapshot->index));
    out.put(R"(,"total":)");
    out.put(std::to_string(snapshot->total));
    out.put('}');
  }
  str(R"(,"summary":)", summary);
  out.put(R"(,"changes":[)");
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    if (i) out.put(',');
    str(R"({"op":)", to_string(c.op));
    str(R"(,"path":)", c.path);
    if (!c.old_json.empty()) {
      out.put(R"(,"old":)");
      out.put(c.old_json);
    }
    if (!c.new_json.empty()) {
      out.put(R"(,"new":)");
      out.put(c.new_json);
    }
    out.put('}');
  }
  out.put(']');
  for (size_t i = 0; i < fields.size(); ++i) {
    out.put(i ? "," : R"(,"fields":{)");
    append_json_string(fields[i].first, out);
    out.put(':');
    append_json_string(fields[i].second, out);
  }
  if (!fields.empty()) out.put('}');
  if (!old_object.empty()) {
    out.put(R"(,"old":)");
    out.put(old_object);
  }
  if (!new_object.empty()) {
    out.put(R"(,"new":)");
    out.put(new_object);
  }
  out.put('}');
  out.done();
  // Every string here came from validated JSON or our own writers; should
  // one ever not be UTF-8, the careful path replaces what is not.
  if (!simdjson::validate_utf8(text.data(), text.size())) [[unlikely]]
    return to_json_checked();
  return text;
}

namespace {

// Reading a change set back (the journal, the outbox, the change API's
// answers): untrusted bytes, so a field of the wrong type is an Error that
// names it and what it should be, never nlohmann's type_error.
using Json = nlohmann::json;

const char* a_type(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float: return "a number";
    default: return "binary data";
  }
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const Json& v) {
  throw Error("change set field \"" + field + "\": expected " + expected + ", found " + a_type(v));
}

// Member `key` of `o` (named `where` + key in an error), null when absent.
const Json* member(const Json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

std::string text_at(const Json& o, const char* key, const std::string& where = "") {
  const Json* v = member(o, key);
  if (!v) return {};
  if (!v->is_string()) wrong_type(where + key, "a string", *v);
  return v->get<std::string>();
}

const Json* object_at(const Json& o, const char* key, const std::string& where = "") {
  const Json* v = member(o, key);
  if (v && !v->is_object()) wrong_type(where + key, "an object", *v);
  return v;
}

uint64_t count_at(const Json& o, const char* key, const std::string& where) {
  const Json* v = member(o, key);
  if (!v) return 0;
  if (!v->is_number_unsigned()) wrong_type(where + key, "a number", *v);
  return v->get<uint64_t>();
}

}  // namespace

ChangeSet ChangeSet::from_json(std::string_view text) {
  if (json_nested_deeper_than(text)) throw Error("not a kubetrail.dev/v1 change set: " + nested_deeper_than());
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw Error("not a kubetrail.dev/v1 change set: not JSON (byte " + std::to_string(e.byte) + ")");
  } catch (const Json::exception& e) {
    // out_of_range: a number JSON can write and a double cannot hold (1e400).
    throw Error(std::string("not a kubetrail.dev/v1 change set: not JSON: ") + e.what());
  }
  const Json* version = j.is_object() ? member(j, "schemaVersion") : nullptr;
  if (!version || *version != "kubetrail.dev/v1") throw Error("not a kubetrail.dev/v1 change set");
  ChangeSet cs;
  const std::string type = text_at(j, "type");
  auto t = parse_change_type(type);
  if (!t) throw Error("change set with unknown type \"" + type + "\"");
  cs.type = *t;
  cs.id = text_at(j, "id");
  cs.cluster = text_at(j, "cluster");
  cs.observed_at = text_at(j, "observedAt");
  if (const Json* r = object_at(j, "resource")) {
    cs.resource.group = text_at(*r, "group", "resource.");
    cs.resource.version = text_at(*r, "version", "resource.");
    cs.resource.resource = text_at(*r, "resource", "resource.");
    cs.resource.kind = text_at(*r, "kind", "resource.");
  }
  cs.resource.namespaced = j.contains("namespace");
  cs.object_namespace = text_at(j, "namespace");
  cs.name = text_at(j, "name");
  cs.uid = text_at(j, "uid");
  cs.resource_version = text_at(j, "resourceVersion");
  if (const Json* a = object_at(j, "actor"))
    cs.actor =
        Actor{text_at(*a, "manager", "actor."), text_at(*a, "operation", "actor."), text_at(*a, "time", "actor.")};
  if (const Json* c = member(j, "catchUp")) {
    if (!c->is_boolean()) wrong_type("catchUp", "a boolean", *c);
    cs.catch_up = c->get<bool>();
  }
  if (cs.type == ChangeType::snapshot) {
    const Json* sn = object_at(j, "snapshot");
    if (!sn || !sn->contains("id")) throw Error("Snapshot change set without its snapshot id");
    cs.snapshot = SnapshotInfo{text_at(*sn, "id", "snapshot."), text_at(*sn, "handler", "snapshot."),
                               count_at(*sn, "index", "snapshot."), count_at(*sn, "total", "snapshot.")};
  }
  cs.summary = text_at(j, "summary");
  if (const Json* changes = member(j, "changes")) {
    if (!changes->is_array()) wrong_type("changes", "an array", *changes);
    for (size_t i = 0; i < changes->size(); ++i) {
      const Json& c = (*changes)[i];
      const std::string where = "changes[" + std::to_string(i) + "]";
      if (!c.is_object()) wrong_type(where, "an object", c);
      FieldChange fc;
      const std::string op = member(c, "op") ? text_at(c, "op", where + ".") : "replace";
      fc.op = op == "add" ? FieldOp::add : op == "remove" ? FieldOp::remove : FieldOp::replace;
      fc.path = text_at(c, "path", where + ".");
      if (c.contains("old")) fc.old_json = c["old"].dump();
      if (c.contains("new")) fc.new_json = c["new"].dump();
      cs.changes.push_back(std::move(fc));
    }
  }
  if (j.contains("fields") && j["fields"].is_object())
    for (const auto& [k, v] : j["fields"].items())
      if (v.is_string()) cs.fields.emplace_back(k, v.get<std::string>());
  if (j.contains("old")) cs.old_object = j["old"].dump();
  if (j.contains("new")) cs.new_object = j["new"].dump();
  return cs;
}

namespace {

constexpr size_t kSummaryItems = 3;
constexpr size_t kValueWidth = 60;

// A value for humans, appended to `out`: strings without quotes, long
// values shortened (at a character boundary: a summary stays valid UTF-8).
void show(std::string_view json, std::string& out) {
  std::string unescaped;
  std::string_view s = json;
  if (json.size() >= 2 && json.front() == '"' && json.back() == '"') {
    if (json.find('\\') == std::string_view::npos) {
      s = json.substr(1, json.size() - 2);  // nothing escaped: the common case, no parse
    } else {
      auto v = nlohmann::json::parse(json, nullptr, false);
      if (v.is_string()) s = unescaped = v.get<std::string>();
    }
  }
  if (s.size() > kValueWidth) {
    out.append(utf8_prefix(s, kValueWidth - 3)).append("...");
  } else {
    out.append(s);
  }
}

// "spec.template.spec.containers[name=web].image" -> "web"
std::string_view container_of(std::string_view path) {
  auto open = path.rfind("containers[name=");
  if (open == std::string_view::npos) return {};
  open += 16;
  auto close = path.find(']', open);
  return close == std::string_view::npos ? std::string_view() : path.substr(open, close - open);
}

bool is_image(const FieldChange& c) {
  return c.op == FieldOp::replace && c.path.ends_with(".image") && !container_of(c.path).empty();
}
bool is_replicas(const FieldChange& c) { return c.path == "spec.replicas"; }

void describe(const FieldChange& c, std::string& out) {
  auto old_to_new = [&] {
    show(c.old_json, out);
    out.append(" → ");
    show(c.new_json, out);
  };
  if (is_image(c)) {
    out.append("container ").append(container_of(c.path)).append(" image ");
    return old_to_new();
  }
  if (is_replicas(c) && c.op == FieldOp::replace) {
    out.append("replicas ");
    return old_to_new();
  }
  out.append(c.path);
  switch (c.op) {
    case FieldOp::add:
      out.append(" added (");
      show(c.new_json, out);
      out.append(")");
      return;
    case FieldOp::remove: out.append(" removed"); return;
    default: out.append(" "); old_to_new();
  }
}

}  // namespace

std::string summarize(const ChangeSet& cs) {
  std::string out;
  out.reserve(128);
  out.append(cs.resource.kind).append(" ");
  if (!cs.object_namespace.empty()) out.append(cs.object_namespace).append("/");
  out.append(cs.name);
  if (cs.type == ChangeType::added) return out.append(" added");
  if (cs.type == ChangeType::deleted) return out.append(" deleted");
  if (cs.type == ChangeType::snapshot) {
    out.append(" exists");
    if (cs.snapshot && cs.snapshot->total)
      out.append(" (inventory ")
          .append(std::to_string(cs.snapshot->index))
          .append(" of ")
          .append(std::to_string(cs.snapshot->total))
          .append(")");
    return out;
  }
  // What users look for first: images, then scale, then the rest in order.
  size_t shown = 0;
  auto show_where = [&](auto wanted) {
    for (const auto& c : cs.changes) {
      if (shown == kSummaryItems) return;
      if (!wanted(c)) continue;
      out.append(shown++ ? "; " : ": ");
      describe(c, out);
    }
  };
  show_where(is_image);
  show_where(is_replicas);
  show_where([](const FieldChange& c) { return !is_image(c) && !is_replicas(c); });
  if (cs.changes.size() > kSummaryItems)
    out.append("; and ").append(std::to_string(cs.changes.size() - kSummaryItems)).append(" more");
  return out;
}

}  // namespace kubetrail::model
