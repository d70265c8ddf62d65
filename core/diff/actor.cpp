#include "diff/actor.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>

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

// A manager's identity in managedFields: who, how, through which
// subresource. Length-prefixed, so no two triples share a key.
std::string identity(std::string_view manager, std::string_view operation, std::string_view subresource) {
  std::string key = std::to_string(manager.size());
  key.append(1, ':').append(manager).append(std::to_string(operation.size())).append(1, ':');
  return key.append(operation).append(subresource);
}

// What find_actor() may read of fieldsV1 sets for one event, in members
// visited plus bytes of keyed elements' names parsed (tens of ms at most):
// past it the actor is the newest manager that moved, as when no fieldsV1
// holds a change. A hostile object's fieldsV1 of millions of members,
// searched for each of thousands of changes, is not read to the end; a
// real one's few hundred members are read a few times.
constexpr size_t kFieldsBudget = size_t{1} << 22;

// Whether a managedFields fieldsV1 set holds `path`: the manager owns that
// field (or the whole subtree added there). Keyed list elements are
// "k:{\"name\":\"web\"}" entries, fields "f:name".
// `budget`: members it may still visit, spent as it goes; false once out.
bool fields_hold(dom::element fields, std::span<const model::Segment> path, simdjson::dom::parser& key_parser,
                 size_t& budget) {
  dom::element node = fields;
  for (const model::Segment& s : path) {
    dom::object o;
    if (node.get(o) != simdjson::SUCCESS) return false;
    const size_t members = o.size();  // what a lookup in it may read
    if (members > budget) {
      budget = 0;
      return false;
    }
    budget -= members;
    bool found = false;
    if (s.kind == model::Segment::Kind::key) {
      found = o.at_key("f:" + std::string(s.key)).get(node) == simdjson::SUCCESS;
    } else if (s.kind == model::Segment::Kind::index) {
      found = o.at_key("i:" + std::to_string(s.index)).get(node) == simdjson::SUCCESS;
    } else {
      for (auto [name, child] : o) {
        if (!name.starts_with("k:")) continue;
        if (name.size() > budget) {  // a name is parsed: its bytes are spent too
          budget = 0;
          return false;
        }
        budget -= name.size();
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
  // The entry of a manager before: the first of its identity, by scans for
  // the few an object has (and no allocation), else through a table (a
  // hostile object's 100,000 entries, scanned for each, took minutes).
  std::unordered_map<std::string, const model::ManagerEntry*> before_by_identity;
  if (before && before->size() > kScanUpTo) {
    before_by_identity.reserve(before->size());
    for (const auto& p : *before) before_by_identity.emplace(identity(p.manager, p.operation, p.subresource), &p);
  }
  auto previous = [&](const model::ManagerEntry& m) -> const model::ManagerEntry* {
    if (!before) return nullptr;
    if (before->size() <= kScanUpTo) {
      auto prev = std::find_if(before->begin(), before->end(), [&](const model::ManagerEntry& p) {
        return p.manager == m.manager && p.operation == m.operation && p.subresource == m.subresource;
      });
      return prev == before->end() ? nullptr : &*prev;
    }
    auto it = before_by_identity.find(identity(m.manager, m.operation, m.subresource));
    return it == before_by_identity.end() ? nullptr : it->second;
  };
  std::vector<const model::ManagerEntry*> moved;
  for (const auto& m : after) {
    const model::ManagerEntry* prev = previous(m);
    if (prev && prev->time >= m.time) continue;
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
    // Each manager's entry: the first of its identity, as a scan finds it.
    std::unordered_map<std::string, dom::element> entry_by_identity;
    if (entries.size() > kScanUpTo) {
      entry_by_identity.reserve(entries.size());
      for (dom::element e : entries)
        entry_by_identity.emplace(
            identity(string_at(e, "manager"), string_at(e, "operation"), string_at(e, "subresource")), e);
    }
    auto entry_of = [&](const model::ManagerEntry* m, dom::element& entry) {
      if (entries.size() > kScanUpTo) {
        auto it = entry_by_identity.find(identity(m->manager, m->operation, m->subresource));
        if (it == entry_by_identity.end()) return false;
        entry = it->second;
        return true;
      }
      for (dom::element e : entries)
        if (string_at(e, "manager") == m->manager && string_at(e, "operation") == m->operation &&
            string_at(e, "subresource") == m->subresource) {
          entry = e;
          return true;
        }
      return false;
    };
    simdjson::dom::parser key_parser;  // for keyed elements' "k:{...}" names
    size_t budget = kFieldsBudget;
    auto holds_a_change = [&](const model::ManagerEntry* m) {
      dom::element entry, fields;
      if (budget == 0 || !entry_of(m, entry) || entry["fieldsV1"].get(fields) != simdjson::SUCCESS) return false;
      for (const auto& p : paths)
        if (fields_hold(fields, p->segments(), key_parser, budget)) return true;
      return false;
    };
    auto owner = std::find_if(moved.begin(), moved.end(), holds_a_change);
    if (owner != moved.end()) best = *owner;
  }
  return model::Actor{best->manager, best->operation, best->time};
}

}  // namespace kubetrail::diff
