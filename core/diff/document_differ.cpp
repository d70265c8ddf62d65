#include "diff/document_differ.hpp"

#include <algorithm>
#include <unordered_map>

#include "common/json_writer.hpp"
#include "diff/json_values.hpp"
#include "diff/merge_keys.hpp"

namespace kubetrail::diff {

namespace {
template <class Match>
int32_t find_child(std::span<const UnchangedBytes::Node> nodes, int32_t parent, uint32_t& next, Match&& match) {
  const uint32_t first = uint32_t(parent) + 1, end = nodes[size_t(parent)].after;
  auto probe = [&](uint32_t from) -> int32_t {
    uint32_t c = from;
    for (int k = 0; k < UnchangedBytes::kProbes && c < end; ++k, c = nodes[c].after)
      if (match(nodes[c])) {
        next = nodes[c].after;
        return int32_t(c);
      }
    return -1;
  };
  if (next > first && next < end)
    if (const int32_t c = probe(next); c >= 0) return c;
  return probe(first);
}
}  // namespace

int32_t UnchangedBytes::child(int32_t parent, std::string_view key, uint32_t& next) const noexcept {
  return find_child(nodes, parent, next, [&](const Node& n) { return !n.in_list && n.key == key; });
}

int32_t UnchangedBytes::child(int32_t parent, uint32_t index, uint32_t& next) const noexcept {
  return find_child(nodes, parent, next, [&](const Node& n) { return n.in_list && n.index == index; });
}

void DocumentDiffer::diff(dom::element old_doc, dom::element new_doc, std::vector<model::FieldChange>& out,
                          const ListKeys& keys, std::span<const model::Segment> at, const UnchangedBytes* unchanged) {
  keys_ = &keys;
  path_.assign(at.begin(), at.end());
  scratch_.clear();
  unchanged_ = unchanged;
  node_ = unchanged ? unchanged->root : -1;
  diff_value(old_doc, new_doc, out);
}

void DocumentDiffer::emit(model::FieldOp op, const dom::element* a, const dom::element* b,
                          std::vector<model::FieldChange>& out) {
  model::FieldChange c;
  c.op = op;
  model::append_path(path_, c.path);
  if (a) append_json(*a, c.old_json);
  if (b) append_json(*b, c.new_json);
  out.push_back(std::move(c));
}

// Diffs a pair at the child `id` (a name or an index) of the b value being
// walked, unless the UnchangedBytes table proves the b side, a container,
// the same bytes as its counterpart; the walk below it knows its node.
template <class Id>
void DocumentDiffer::diff_child(dom::element a, dom::element b, Id id, bool paired_by_name, uint32_t& next_child,
                                std::vector<model::FieldChange>& out) {
  const int32_t at = node_;
  if (at >= 0 && is_container(b)) {
    node_ = unchanged_->child(at, id, next_child);
    if (node_ >= 0 && unchanged_->same(node_, paired_by_name)) {
      node_ = at;
      return;
    }
  }
  diff_value(a, b, out);
  node_ = at;
}

void DocumentDiffer::diff_value(dom::element a, dom::element b, std::vector<model::FieldChange>& out) {
  using T = dom::element_type;
  T ta = a.type(), tb = b.type();
  if (ta == T::OBJECT && tb == T::OBJECT) return diff_object(dom::object(a), dom::object(b), out);
  if (ta == T::ARRAY && tb == T::ARRAY) return diff_array(dom::array(a), dom::array(b), out);
  if (ta == T::OBJECT || ta == T::ARRAY || tb == T::OBJECT || tb == T::ARRAY || !same_scalar(a, b))
    emit(model::FieldOp::replace, &a, &b, out);
}

namespace {
// An object's members by name, first of a name winning (as at_key()).
auto members_by_name(dom::object o) {
  return FirstOfKey(o, [](const dom::key_value_pair& member) { return member.key; });
}
}  // namespace

void DocumentDiffer::diff_object(dom::object a, dom::object b, std::vector<model::FieldChange>& out) {
  // The API server writes an object's fields in a fixed order, so the two
  // versions nearly always have their keys in the same places: walk them in
  // step, and look keys up only once that fails.
  auto ib = b.begin();
  bool in_step = true;
  size_t matched = 0;
  auto b_members = members_by_name(b);
  uint32_t next_child = 0;
  for (auto [key, av] : a) {
    path_.push_back(model::Segment{model::Segment::Kind::key, key, 0, {}, {}});
    dom::element bv;
    bool found;
    if (in_step && ib != b.end() && ib.key() == key) {
      bv = ib.value();
      ++ib;
      found = true;
    } else {
      in_step = false;
      auto member = b_members.find(key);
      found = member != b_members.end();
      if (found) bv = member.value();
    }
    if (found) {
      ++matched;
      diff_child(av, bv, key, true, next_child, out);
    } else {
      emit(model::FieldOp::remove, &av, nullptr, out);
    }
    path_.pop_back();
  }
  if (matched == b.size()) return;  // no key of b is new
  auto a_members = members_by_name(a);
  for (auto [key, bv] : b) {
    if (a_members.find(key) != a_members.end()) continue;
    path_.push_back(model::Segment{model::Segment::Kind::key, key, 0, {}, {}});
    emit(model::FieldOp::add, nullptr, &bv, out);
    path_.pop_back();
  }
}

void DocumentDiffer::diff_array(dom::array a, dom::array b, std::vector<model::FieldChange>& out) {
  std::string_view key = choose_key(keys_->candidates(path_), {a, b});
  if (!key.empty()) {
    std::vector<KeyedElement> ka, kb;
    auto a_by_key = keyed_elements(a, key, ka, scratch_);
    if (a_by_key && keyed_elements(b, key, kb, scratch_)) {
      uint32_t next_child = 0;
      for (size_t j = 0; j < kb.size(); ++j) {
        auto match = a_by_key->find(kb[j].key);
        path_.push_back(model::Segment{model::Segment::Kind::keyed, {}, j, key, kb[j].key});
        if (match != a_by_key->end()) {
          match->matched = true;
          diff_child(match->value, kb[j].value, uint32_t(j), true, next_child, out);
        } else {
          emit(model::FieldOp::add, nullptr, &kb[j].value, out);
        }
        path_.pop_back();
      }
      for (size_t i = 0; i < ka.size(); ++i) {
        if (ka[i].matched) continue;
        path_.push_back(model::Segment{model::Segment::Kind::keyed, {}, i, key, ka[i].key});
        emit(model::FieldOp::remove, &ka[i].value, nullptr, out);
        path_.pop_back();
      }
      return;
    }
  }
  // By index: common prefix element-wise, then adds, then removes from the
  // end backwards (so that applying the changes in order is well defined).
  size_t na = a.size(), nb = b.size(), common = std::min(na, nb);
  auto ia = a.begin(), ib = b.begin();
  uint32_t next_child = 0;
  for (size_t i = 0; i < common; ++i, ++ia, ++ib) {
    path_.push_back(model::Segment{model::Segment::Kind::index, {}, i, {}, {}});
    diff_child(*ia, *ib, uint32_t(i), false, next_child, out);
    path_.pop_back();
  }
  for (size_t i = common; i < nb; ++i, ++ib) {
    path_.push_back(model::Segment{model::Segment::Kind::index, {}, i, {}, {}});
    dom::element e = *ib;
    emit(model::FieldOp::add, nullptr, &e, out);
    path_.pop_back();
  }
  if (na > nb) {
    std::vector<dom::element> extra;
    for (; ia != a.end(); ++ia) extra.push_back(*ia);
    for (size_t k = extra.size(); k-- > 0;) {
      path_.push_back(model::Segment{model::Segment::Kind::index, {}, common + k, {}, {}});
      emit(model::FieldOp::remove, &extra[k], nullptr, out);
      path_.pop_back();
    }
  }
}

}  // namespace kubetrail::diff
