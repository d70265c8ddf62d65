#include "diff/actor.hpp"

#include <algorithm>
#include <span>
#include <string>

#include "common/error.hpp"
#include "common/keyed_hash.hpp"
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
// subresource. Views into a ManagerEntry or a managedFields entry.
struct ManagerIdentity {
  std::string_view manager, operation, subresource;
  bool operator==(const ManagerIdentity&) const = default;
};

// Keyed (common/keyed_hash.hpp): managers' names are the object's.
struct ManagerIdentityHash {
  size_t operator()(const ManagerIdentity& id) const noexcept {
    size_t seed = keyed_hash(id.manager);
    for (std::string_view part : {id.operation, id.subresource})
      seed ^= keyed_hash(part) + 0x9e3779b97f4a7c15 + (seed << 6) + (seed >> 2);
    return seed;
  }
};

ManagerIdentity identity_of(const model::ManagerEntry& m) { return {m.manager, m.operation, m.subresource}; }

// The managers of one list by identity, first of an identity winning.
auto managers_by_identity(std::span<const model::ManagerEntry> managers) {
  auto key_of = [](const model::ManagerEntry& m) { return identity_of(m); };
  return FirstOfKey<std::span<const model::ManagerEntry>, decltype(key_of), ManagerIdentityHash>(managers, key_of);
}

// managedFields entries by identity, first of an identity winning.
auto entries_by_identity(dom::array entries) {
  auto key_of = [](dom::element e) {
    return ManagerIdentity{string_view_at(e, "manager"), string_view_at(e, "operation"),
                           string_view_at(e, "subresource")};
  };
  return FirstOfKey<dom::array, decltype(key_of), ManagerIdentityHash>(entries, key_of);
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
  // The entry of a manager before: the first of its identity (a hostile
  // object's 100,000 entries, each scanned for, took minutes).
  auto before_by_identity = managers_by_identity(before ? std::span(*before) : std::span<const model::ManagerEntry>{});
  std::vector<const model::ManagerEntry*> moved;
  for (const auto& m : after) {
    auto prev = before_by_identity.find(identity_of(m));
    if (prev != before_by_identity.end() && prev->time >= m.time) continue;
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
    auto entry_of = entries_by_identity(entries);
    simdjson::dom::parser key_parser;  // for keyed elements' "k:{...}" names
    size_t budget = kFieldsBudget;
    auto holds_a_change = [&](const model::ManagerEntry* m) {
      if (budget == 0) return false;
      auto entry = entry_of.find(identity_of(*m));
      dom::element fields;
      if (entry == entry_of.end() || (*entry)["fieldsV1"].get(fields) != simdjson::SUCCESS) return false;
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
