#include "diff/actor.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "diff/json_values.hpp"
#include "diff/merge_keys.hpp"
#include "model/path.hpp"

namespace kubetrail::diff {

void extract_managers(dom::element object, std::vector<model::ManagerEntry>& out) {
  dom::array fields;
  size_t n = 0;
  if (object.at_pointer("/metadata/managedFields").get(fields) == simdjson::SUCCESS) {
    for (dom::element e : fields) {
      dom::object f;
      if (e.get(f) != simdjson::SUCCESS) continue;
      if (n == out.size()) out.emplace_back();
      model::ManagerEntry& m = out[n++];
      std::string* const wanted[] = {&m.manager, &m.operation, &m.time, &m.subresource};
      for (std::string* to : wanted) to->clear();
      // One pass over the entry's members, not a lookup of each of the four
      // (each lookup read the members before it again; an entry has seven).
      // The first of a name counts, as a lookup finds it; one that is not a
      // string reads as "".
      unsigned seen = 0;
      for (auto [key, value] : f) {
        const int i = key == "manager" ? 0 : key == "operation" ? 1 : key == "time" ? 2 : key == "subresource" ? 3 : -1;
        if (i < 0 || (seen & (1u << i))) continue;
        seen |= 1u << i;
        std::string_view v;
        if (value.get(v) == simdjson::SUCCESS) wanted[i]->assign(v);
      }
    }
  }
  out.resize(n);
}

namespace {

// Whether a managedFields fieldsV1 set holds `path`: the manager owns that
// field (or the whole subtree added there). Keyed list elements are
// "k:{\"name\":\"web\"}" entries, fields "f:name".
bool fields_hold(dom::element fields, std::span<const model::Segment> path) {
  dom::element node = fields;
  simdjson::dom::parser key_parser;
  for (const model::Segment& s : path) {
    dom::object o;
    if (node.get(o) != simdjson::SUCCESS) return false;
    bool found = false;
    if (s.kind == model::Segment::Kind::key) {
      found = o.at_key("f:" + std::string(s.key)).get(node) == simdjson::SUCCESS;
    } else if (s.kind == model::Segment::Kind::index) {
      found = o.at_key("i:" + std::to_string(s.index)).get(node) == simdjson::SUCCESS;
    } else {
      for (auto [name, child] : o) {
        if (!name.starts_with("k:")) continue;
        dom::element k;
        if (key_parser.parse(simdjson::padded_string(name.substr(2))).get(k) != simdjson::SUCCESS) continue;
        std::vector<std::unique_ptr<std::string>> scratch;
        std::string_view text;
        dom::element v;
        if (k[s.field].get(v) == simdjson::SUCCESS && key_text(v, text, scratch) && text == s.value) {
          node = child;
          found = true;
          break;
        }
      }
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

std::optional<model::Actor> find_actor(const std::vector<model::ManagerEntry>* before,
                                       const std::vector<model::ManagerEntry>& after, dom::element object,
                                       const std::vector<model::FieldChange>* changes) {
  std::vector<const model::ManagerEntry*> moved;
  for (const auto& m : after) {
    if (before) {
      auto prev = std::find_if(before->begin(), before->end(), [&](const model::ManagerEntry& p) {
        return p.manager == m.manager && p.operation == m.operation && p.subresource == m.subresource;
      });
      if (prev != before->end() && prev->time >= m.time) continue;
    }
    moved.push_back(&m);
  }
  if (moved.empty()) return std::nullopt;
  auto rank = [](const model::ManagerEntry* e) {
    return std::pair(e->subresource != "status", std::string_view(e->time));
  };
  std::stable_sort(moved.begin(), moved.end(), [&](auto* a, auto* b) { return rank(a) > rank(b); });
  const model::ManagerEntry* best = moved.front();
  dom::array entries;
  if (moved.size() > 1 && changes && object.at_pointer("/metadata/managedFields").get(entries) == simdjson::SUCCESS) {
    std::vector<std::unique_ptr<model::ParsedPath>> paths;
    for (const auto& c : *changes) {
      try {  // every path kubetrail writes parses back (path.hpp); a slip costs attribution, never the event
        paths.push_back(std::make_unique<model::ParsedPath>(c.path));
      } catch (const Error&) {
      }
    }
    auto holds_a_change = [&](const model::ManagerEntry* m) {
      for (dom::element e : entries) {
        if (string_at(e, "manager") != m->manager || string_at(e, "operation") != m->operation ||
            string_at(e, "subresource") != m->subresource)
          continue;
        dom::element fields;
        if (e["fieldsV1"].get(fields) != simdjson::SUCCESS) return false;
        for (const auto& p : paths)
          if (fields_hold(fields, p->segments())) return true;
        return false;
      }
      return false;
    };
    auto owner = std::find_if(moved.begin(), moved.end(), holds_a_change);
    if (owner != moved.end()) best = *owner;
  }
  return model::Actor{best->manager, best->operation, best->time};
}

}  // namespace kubetrail::diff
