// Change sets as JSON (schema kubetrail.dev/v1) and their one-line summary.
#include <simdjson.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
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

ChangeSet ChangeSet::from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || j.value("schemaVersion", "") != "kubetrail.dev/v1")
    throw Error("not a kubetrail.dev/v1 change set");
  ChangeSet cs;
  auto t = parse_change_type(j.value("type", ""));
  if (!t) throw Error("change set with unknown type \"" + j.value("type", "") + "\"");
  cs.type = *t;
  cs.id = j.value("id", "");
  cs.cluster = j.value("cluster", "");
  cs.observed_at = j.value("observedAt", "");
  const auto& r = j.contains("resource") ? j["resource"] : nlohmann::json::object();
  cs.resource.group = r.value("group", "");
  cs.resource.version = r.value("version", "");
  cs.resource.resource = r.value("resource", "");
  cs.resource.kind = r.value("kind", "");
  cs.resource.namespaced = j.contains("namespace");
  cs.object_namespace = j.value("namespace", "");
  cs.name = j.value("name", "");
  cs.uid = j.value("uid", "");
  cs.resource_version = j.value("resourceVersion", "");
  if (j.contains("actor"))
    cs.actor = Actor{j["actor"].value("manager", ""), j["actor"].value("operation", ""), j["actor"].value("time", "")};
  cs.catch_up = j.value("catchUp", false);
  if (cs.type == ChangeType::snapshot) {
    const auto& sn = j.contains("snapshot") ? j["snapshot"] : nlohmann::json::object();
    if (!sn.is_object() || !sn.contains("id")) throw Error("Snapshot change set without its snapshot id");
    cs.snapshot = SnapshotInfo{sn.value("id", ""), sn.value("handler", ""), sn.value("index", uint64_t{0}),
                               sn.value("total", uint64_t{0})};
  }
  cs.summary = j.value("summary", "");
  for (const auto& c : j.value("changes", nlohmann::json::array())) {
    FieldChange fc;
    std::string op = c.value("op", "replace");
    fc.op = op == "add" ? FieldOp::add : op == "remove" ? FieldOp::remove : FieldOp::replace;
    fc.path = c.value("path", "");
    if (c.contains("old")) fc.old_json = c["old"].dump();
    if (c.contains("new")) fc.new_json = c["new"].dump();
    cs.changes.push_back(std::move(fc));
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
