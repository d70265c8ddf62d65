#include "diff/diff.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <span>

#include "common/json_writer.hpp"
#include "diff/list_keys.hpp"

namespace kubetrail::diff {

namespace dom = simdjson::dom;

std::string redacted_marker(std::string_view key, std::string_view value) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(value.data()),
       value.size(), digest, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "<redacted hmac:";
  for (int i = 0; i < 4; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xf]);
  }
  out.push_back('>');
  return out;
}

std::string random_redaction_key() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1)
    throw Error("cannot draw a random redaction key (OpenSSL RAND_bytes failed)");
  return key;
}

// ---------------------------------------------------------------------------
// Merge keys of lists. Lists that Kubernetes merges by key (strategic merge
// patch x-kubernetes-patch-merge-key / x-kubernetes-list-map-keys in the
// OpenAPI spec of the built-in types) are diffed by key, so reordering is no
// change and inserting an element is one add. Keyed by the list's field
// name; where one name has different keys in different types (container
// ports vs service ports), the first key that every element carries wins.
// ---------------------------------------------------------------------------
namespace {

// Text of a merge-key value (string, or integer such as containerPort).
bool key_text(dom::element v, std::string_view& text, std::vector<std::unique_ptr<std::string>>& scratch) {
  switch (v.type()) {
    case dom::element_type::STRING: text = std::string_view(v); return true;
    case dom::element_type::INT64:
      scratch.push_back(std::make_unique<std::string>(std::to_string(int64_t(v))));
      text = *scratch.back();
      return true;
    case dom::element_type::UINT64:
      scratch.push_back(std::make_unique<std::string>(std::to_string(uint64_t(v))));
      text = *scratch.back();
      return true;
    default: return false;
  }
}

// Picks the merge key every element of the given arrays has; "" if none.
std::string_view choose_key(std::span<const std::string_view> candidates, std::initializer_list<dom::array> arrays) {
  for (std::string_view key : candidates) {
    bool all = true;
    for (dom::array arr : arrays) {
      for (dom::element e : arr) {
        dom::object o;
        if (e.get(o) != simdjson::SUCCESS || o[key].error() != simdjson::SUCCESS) {
          all = false;
          break;
        }
      }
      if (!all) break;
    }
    if (all) return key;
  }
  return {};
}

struct KeyedElement {
  std::string_view key;
  dom::element value;
  bool matched = false;
};

// Elements of a keyed list with their key texts; false if keys are missing,
// not scalars, or not unique (then the list is diffed by index).
bool keyed_elements(dom::array arr, std::string_view key, std::vector<KeyedElement>& out,
                    std::vector<std::unique_ptr<std::string>>& scratch) {
  for (dom::element e : arr) {
    std::string_view text;
    if (!key_text(dom::object(e)[key].value_unsafe(), text, scratch)) return false;
    for (const auto& k : out)
      if (k.key == text) return false;
    out.push_back({text, e});
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------
// DocumentDiffer
// ---------------------------------------------------------------------------
int32_t UnchangedBytes::child(int32_t parent, std::string_view key) const noexcept {
  for (uint32_t c = uint32_t(parent) + 1; c < nodes[size_t(parent)].after; c = nodes[c].after)
    if (!nodes[c].in_list && nodes[c].key == key) return int32_t(c);
  return -1;
}

int32_t UnchangedBytes::child(int32_t parent, uint32_t index) const noexcept {
  for (uint32_t c = uint32_t(parent) + 1; c < nodes[size_t(parent)].after; c = nodes[c].after)
    if (nodes[c].in_list && nodes[c].index == index) return int32_t(c);
  return -1;
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

namespace {
bool is_container(dom::element e) {
  auto t = e.type();
  return t == dom::element_type::OBJECT || t == dom::element_type::ARRAY;
}

bool same_scalar(dom::element a, dom::element b) {
  using T = dom::element_type;
  T ta = a.type(), tb = b.type();
  if (ta != tb) {
    // 3 and 3.0 (or int64/uint64 of one value) are the same number.
    auto is_num = [](T t) { return t == T::INT64 || t == T::UINT64 || t == T::DOUBLE; };
    if (is_num(ta) && is_num(tb)) return double(a) == double(b);
    return false;
  }
  switch (ta) {
    case T::STRING: return std::string_view(a) == std::string_view(b);
    case T::INT64: return int64_t(a) == int64_t(b);
    case T::UINT64: return uint64_t(a) == uint64_t(b);
    case T::DOUBLE: return double(a) == double(b);
    case T::BOOL: return bool(a) == bool(b);
    case T::NULL_VALUE: return true;
    default: return false;
  }
}
}  // namespace

// Diffs a pair at the child `id` (a name or an index) of the b value being
// walked, unless the UnchangedBytes table proves the b side, a container,
// the same bytes as its counterpart; the walk below it knows its node.
template <class Id>
void DocumentDiffer::diff_child(dom::element a, dom::element b, Id id, bool paired_by_name,
                                std::vector<model::FieldChange>& out) {
  const int32_t at = node_;
  if (at >= 0 && is_container(b)) {
    node_ = unchanged_->child(at, id);
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

void DocumentDiffer::diff_object(dom::object a, dom::object b, std::vector<model::FieldChange>& out) {
  // The API server writes an object's fields in a fixed order, so the two
  // versions nearly always have their keys in the same places: walk them in
  // step, and look keys up (linearly: objects are small) only once that fails.
  auto ib = b.begin();
  bool in_step = true;
  size_t matched = 0;
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
      found = b.at_key(key).get(bv) == simdjson::SUCCESS;
    }
    if (found) {
      ++matched;
      diff_child(av, bv, key, true, out);
    } else {
      emit(model::FieldOp::remove, &av, nullptr, out);
    }
    path_.pop_back();
  }
  if (matched == b.size()) return;  // no key of b is new
  for (auto [key, bv] : b) {
    if (a.at_key(key).error() == simdjson::SUCCESS) continue;
    path_.push_back(model::Segment{model::Segment::Kind::key, key, 0, {}, {}});
    emit(model::FieldOp::add, nullptr, &bv, out);
    path_.pop_back();
  }
}

void DocumentDiffer::diff_array(dom::array a, dom::array b, std::vector<model::FieldChange>& out) {
  std::string_view key = choose_key(keys_->candidates(path_), {a, b});
  if (!key.empty()) {
    std::vector<KeyedElement> ka, kb;
    if (keyed_elements(a, key, ka, scratch_) && keyed_elements(b, key, kb, scratch_)) {
      for (size_t j = 0; j < kb.size(); ++j) {
        auto match = std::find_if(ka.begin(), ka.end(), [&](const KeyedElement& e) { return e.key == kb[j].key; });
        path_.push_back(model::Segment{model::Segment::Kind::keyed, {}, j, key, kb[j].key});
        if (match != ka.end()) {
          match->matched = true;
          diff_child(match->value, kb[j].value, uint32_t(j), true, out);
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
  for (size_t i = 0; i < common; ++i, ++ia, ++ib) {
    path_.push_back(model::Segment{model::Segment::Kind::index, {}, i, {}, {}});
    diff_child(*ia, *ib, uint32_t(i), false, out);
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

// ---------------------------------------------------------------------------
// Pruning rules: what is dropped and what is redacted before an object is
// cached, compiled per resource type. Rules are matched while walking with a
// bitmask of the rules still alive at each depth, so a subtree no rule can
// reach is copied without looking at its paths.
// ---------------------------------------------------------------------------
namespace {
// Lengths of the common prefix and suffix of two texts, compared eight bytes
// at a time.
size_t common_prefix(std::string_view a, std::string_view b) noexcept {
  size_t n = std::min(a.size(), b.size()), i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, a.data() + i, 8);
    std::memcpy(&y, b.data() + i, 8);
    if (x != y) break;
  }
  while (i < n && a[i] == b[i]) ++i;
  return i;
}
size_t common_suffix(std::string_view a, std::string_view b) noexcept {
  size_t n = std::min(a.size(), b.size()), i = 0;
  const char* ea = a.data() + a.size();
  const char* eb = b.data() + b.size();
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    std::memcpy(&x, ea - i - 8, 8);
    std::memcpy(&y, eb - i - 8, 8);
    if (x != y) break;
  }
  while (i < n && ea[-1 - ptrdiff_t(i)] == eb[-1 - ptrdiff_t(i)]) ++i;
  return i;
}
}  // namespace

namespace {
// Stage1 reads simdjson's internal parser state (implementation->
// structural_indexes), which is not public API: a simdjson this code was
// not written against must be looked at before it is used, not trusted.
// Written against 3.0 (Debian bookworm's libsimdjson-dev 3.0.1).
static_assert(simdjson::SIMDJSON_VERSION_MAJOR == 3 && simdjson::SIMDJSON_VERSION_MINOR == 0,
              "diff.cpp's Stage1 reads simdjson's internal structural index: check it against this simdjson "
              "version (dom_parser_implementation::structural_indexes, n_structural_indexes), then update this "
              "assertion");

// simdjson's stage-1 output for a parsed text: the index of every
// structural character ({}[]:, and the first byte of every string, number
// and literal), in order. A container's members sit at known offsets from
// its bracket: key, ':', value, then ',' or the close.
struct Stage1 {
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr auto kDepthStep = [] {
    std::array<signed char, 256> t{};
    t['{'] = t['['] = 1;
    t['}'] = t[']'] = -1;
    return t;
  }();
  const char* src = nullptr;
  const uint32_t* idx = nullptr;
  uint32_t n = 0;

  // The index `source.parser` holds for `source.text`; false if none.
  bool bind(const SourceText& source) noexcept {
    *this = {};
    const auto* impl = source.parser ? source.parser->implementation.get() : nullptr;
    if (!impl || impl->n_structural_indexes == 0 ||
        impl->structural_indexes[impl->n_structural_indexes - 1] >= source.text.size())
      return false;
    src = source.text.data();
    idx = impl->structural_indexes.get();
    n = impl->n_structural_indexes;
    return true;
  }
  char at(uint32_t i) const noexcept { return i < n ? src[idx[i]] : '\0'; }
  static uint32_t plus(uint32_t i, uint32_t k) noexcept { return i == kNone ? kNone : i + k; }
  // Index of the last structural of the value whose first is `i`.
  uint32_t value_end(uint32_t i) const noexcept {
    char c = at(i);
    if (c == '\0') return kNone;
    if (c != '{' && c != '[') return i;
    for (int depth = 0; i < n; ++i) {
      depth += kDepthStep[static_cast<unsigned char>(src[idx[i]])];
      if (depth == 0) return i;
    }
    return kNone;
  }
  // Where the value of the document's top-level field `name` starts ("object"
  // of a watch event, "items" of a list); its quoted name must be the key's
  // exact bytes.
  uint32_t field(std::string_view name) const noexcept {
    if (at(0) != '{') return kNone;
    for (uint32_t last = 0; at(last) == '{' || at(last) == ',';) {
      uint32_t key = last + 1;
      if (at(key) != '"') break;
      // An escaped key ("obj\u0065ct") may be the one the DOM took for
      // `name`: raw bytes cannot tell, so no source (the pruner serializes).
      if (std::memchr(src + idx[key], '\\', idx[key + 1] - idx[key])) return kNone;
      if (idx[key] + name.size() + 2 <= idx[key + 1] && std::string_view(src + idx[key] + 1, name.size()) == name &&
          src[idx[key] + 1 + name.size()] == '"')
        return key + 2;
      last = plus(value_end(key + 2), 1);
    }
    return kNone;
  }
};
}  // namespace

ListItemSources::ListItemSources(const simdjson::dom::parser& parser, std::string_view text)
    : source_{&parser, text, {}, SourceText::kFind} {
  Stage1 s1;
  if (!s1.bind(source_)) return;
  uint32_t items = s1.field("items");
  if (s1.at(items) == '[') next_ = items + 1;
}

SourceText ListItemSources::next() {
  Stage1 s1;
  if (next_ == SourceText::kFind || !s1.bind(source_) || s1.at(next_) != '{') {
    next_ = SourceText::kFind;
    return SourceText{};  // no source: the pruner serializes
  }
  SourceText item = source_;
  item.token = next_;
  uint32_t end = s1.value_end(next_);
  next_ = s1.at(Stage1::plus(end, 1)) == ',' ? end + 2 : SourceText::kFind;
  return item;
}

class ChangeDetector::Rules {
 public:
  enum class Action : unsigned char { drop, redact };
  static constexpr size_t kMaxRules = 64;

  Rules(const ListKeys& keys, const std::string& redaction_key) : keys_(&keys), redaction_key_(&redaction_key) {}
  const ListKeys& keys() const noexcept { return *keys_; }

  // The type's kind and apiVersion, written into pruned objects that lack
  // them: kube-apiserver leaves them out of the items of a list of built-in
  // types (the List carries them) but puts them into every watch object, so
  // without this an object first seen in a list would differ from the same
  // object seen in a watch by two fields that never changed. Written first,
  // kind then apiVersion, as Go's encoder writes a built-in type's fields:
  // a list item and a watch object of the same version prune to the same
  // bytes. (Custom resources' list items carry both, in their own order.)
  void identify(std::string_view kind, std::string_view api_version) {
    kind_field_.clear();
    api_version_field_.clear();
    if (kind.empty() || api_version.empty()) return;
    kind_field_ = "\"kind\":";
    append_json_string(kind, kind_field_);
    api_version_field_ = "\"apiVersion\":";
    append_json_string(api_version, api_version_field_);
  }

  void add(std::string_view pattern, Action action) {
    if (rules_.size() == kMaxRules)
      throw Error("too many [diff] ignore_paths and redact_paths: at most " + std::to_string(kMaxRules) +
                  " path rules per resource, built-in noise rules included");
    rules_.push_back({model::PathPattern::parse(pattern), action});
  }

  // The pruned text of `object`, valid until the next call. `source`: the
  // text it was parsed from, if known (see SourceText).
  std::string_view prune(dom::element object, const SourceText* source = nullptr) {
    path_.clear();
    scratch_.clear();
    nodes_.clear();
    uint64_t all = rules_.size() == 64 ? ~uint64_t{0} : ((uint64_t{1} << rules_.size()) - 1);
    identity_.clear();
    if (!kind_field_.empty() && object.type() == dom::element_type::OBJECT) {
      dom::object top(object);
      if (top["kind"].error() == simdjson::NO_SUCH_FIELD) identity_.append(kind_field_).push_back(',');
      if (top["apiVersion"].error() == simdjson::NO_SUCH_FIELD) identity_.append(api_version_field_).push_back(',');
    }
    JsonOut text = JsonOut::reusing(buffer_);
    write(object, all, text, Place{}, source ? locate(*source) : kNoSource);
    s1_ = {};  // the source is the caller's: not kept past the call
    return text.view();
  }

  // Where the texts of two pruned versions of an object differ, as one
  // subtree at the same path in both: everything outside it is the same
  // bytes at the same places, so diffing the two subtrees gives exactly the
  // changes of diffing the whole objects, at a fraction of the cost (an image
  // bump parses and walks one container list, not the whole Pod twice).
  //
  // `new_text` must be the text the last prune() wrote (its containers were
  // recorded then). The subtree found is the deepest recorded container
  // holding every differing byte, moved up to the outermost keyed list above
  // it (a keyed element's path names its key, which depends on its whole
  // list) and up again until the old text at the same place parses as one
  // value. Returns false when only the whole objects will do.
  struct Subtree {
    std::string_view new_text;
    simdjson::dom::element old_value;  // parsed by the validator given
    std::vector<model::Segment> path;
    UnchangedBytes unchanged;    // what the differ may skip in it
    bool has_new_value = false;  // new_value: the pruned object's own value there, no parse needed
    simdjson::dom::element new_value = {};
  };
  bool changed_subtree(std::string_view old_text, std::string_view new_text, Subtree& out,
                       simdjson::dom::parser& validator) {
    size_t lo = old_text.size(), ln = new_text.size();
    size_t prefix = common_prefix(old_text, new_text);
    size_t suffix = common_suffix(old_text.substr(prefix), new_text.substr(prefix));
    size_t region_end = ln - suffix;  // differing bytes of new: [prefix, region_end)
    int32_t deepest = -1;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = nodes_[i];
      if (n.begin <= prefix && prefix < n.end && region_end <= n.end) deepest = int32_t(i);
    }
    if (deepest <= 0) return false;  // the root, or nothing recorded
    // The chain root..deepest, and the path of each node on it.
    std::vector<int32_t> chain;
    for (int32_t i = deepest; i >= 0; i = nodes_[i].parent) chain.push_back(i);
    std::reverse(chain.begin(), chain.end());
    std::vector<model::Segment> path;
    size_t stop = chain.size() - 1;  // index in chain of the subtree to diff
    size_t element = 0;              // index in chain of the keyed list element narrowed into; 0: none
    for (size_t c = 1; c < chain.size(); ++c) {
      const Node& n = nodes_[chain[c]];
      if (n.in_list && !keys_->candidates(path).empty()) {  // path is still the list's own
        model::Segment seg;
        if (element != 0 || !element_segment(chain[c - 1], n, keys_->candidates(path), seg)) {
          stop = c - 1;
          break;
        }
        element = c;
        path.push_back(seg);
        continue;
      }
      path.push_back(n.in_list ? model::Segment{model::Segment::Kind::index, {}, n.index, {}, {}}
                               : model::Segment{model::Segment::Kind::key, n.key, 0, {}, {}});
    }
    path.resize(stop);
    // Bytes after the differing region are shifted by the change in length.
    const ptrdiff_t shift = ptrdiff_t(lo) - ptrdiff_t(ln);
    for (size_t c = stop; c > 0; --c) {
      const Node& n = nodes_[chain[c]];
      ptrdiff_t old_end = ptrdiff_t(n.end) + shift;
      if (old_end > ptrdiff_t(n.begin) && size_t(old_end) <= lo) {
        std::string_view old_sub = old_text.substr(n.begin, size_t(old_end) - n.begin);
        // Diffing the element itself: its merge key must not have changed.
        if (validator.parse(old_sub.data(), old_sub.size()).get(out.old_value) == simdjson::SUCCESS &&
            (c != element || same_merge_keys(out.old_value, chain[c], std::span(path).first(c - 1)))) {
          out.new_text = new_text.substr(n.begin, n.end - n.begin);
          out.path = std::move(path);
          auto plain = [](std::string_view bytes) { return bytes.find_first_of("\"\\") == std::string_view::npos; };
          bool aligned = plain(new_text.substr(prefix, region_end - prefix)) &&
                         plain(old_text.substr(prefix, lo - suffix - prefix)) &&
                         (prefix == 0 || new_text[prefix - 1] != '\\');
          out.unchanged = UnchangedBytes{nodes_, chain[c], uint32_t(prefix), uint32_t(region_end), aligned};
          out.has_new_value = copied_value(chain[c], out.new_value);
          return true;
        }
      }
      path.pop_back();
    }
    return false;
  }

 private:
  struct Rule {
    model::PathPattern pattern;
    Action action;
  };

  // Narrowing into one element E of a keyed list L (an image bump then
  // parses one container, not the list). Exact when the diff runs on E or
  // below it: the old text at that place parses as one value, so all of L
  // but E is the same bytes in both texts; E's merge-key fields are outside
  // a subtree below E, and checked by same_merge_keys() when diffing E
  // itself. So the key chosen for L, the keys' uniqueness and E's pairing
  // are what the new list alone says, and the segment for E comes from it.
  // False when L was not copied unpruned (its value is not at hand).
  bool element_segment(int32_t list, const UnchangedBytes::Node& e, std::span<const std::string_view> candidates,
                       model::Segment& seg) {
    dom::element list_value;
    dom::array arr;
    if (!copied_value(list, list_value) || list_value.get(arr) != simdjson::SUCCESS) return false;
    std::string_view key = choose_key(candidates, {arr});
    keyed_.clear();
    if (!key.empty() && keyed_elements(arr, key, keyed_, scratch_) && e.index < keyed_.size())
      seg = model::Segment{model::Segment::Kind::keyed, {}, e.index, key, keyed_[e.index].key};
    else
      seg = model::Segment{model::Segment::Kind::index, {}, e.index, {}, {}};
    return true;
  }
  // Whether the old and new element at `node` agree on every merge-key
  // candidate of their list (at `list_path`): present in both with the
  // same scalar, or in neither.
  bool same_merge_keys(dom::element old_element, int32_t node, std::span<const model::Segment> list_path) const {
    dom::element new_element;
    dom::object a, b;
    if (!copied_value(node, new_element) || old_element.get(a) != simdjson::SUCCESS ||
        new_element.get(b) != simdjson::SUCCESS)
      return false;
    for (std::string_view k : keys_->candidates(list_path)) {
      dom::element va, vb;
      bool ha = a.at_key(k).get(va) == simdjson::SUCCESS, hb = b.at_key(k).get(vb) == simdjson::SUCCESS;
      if (ha != hb || (ha && (is_container(va) || is_container(vb) || !same_scalar(va, vb)))) return false;
    }
    return true;
  }

  // Which rules a child at `seg` keeps alive, and whether one ends there.
  std::optional<Action> step(uint64_t alive, const model::Segment& seg, uint64_t& child_alive) const {
    size_t depth = path_.size();
    std::optional<Action> ends;
    child_alive = 0;
    for (uint64_t m = alive; m; m &= m - 1) {
      int i = std::countr_zero(m);
      const auto& segs = rules_[i].pattern.segments();
      if (depth >= segs.size() || !segs[depth].matches(seg)) continue;
      if (depth + 1 == segs.size()) {
        if (!ends || rules_[i].action == Action::drop) ends = rules_[i].action;  // drop wins
      } else {
        child_alive |= uint64_t{1} << i;
      }
    }
    return ends;
  }

  // A container written to the pruned text, in document order: its bytes
  // there and its place in its parent. Recorded by every prune() for
  // changed_subtree() and the differ; views point into the object pruned.
  using Node = UnchangedBytes::Node;
  // Where a value being written sits: its parent node and its name (which
  // starts at key_begin) or index.
  struct Place {
    int32_t parent = -1;
    std::string_view key;
    uint32_t index = 0;
    bool in_list = false;
    size_t key_begin = 0;
  };
  int32_t open_node(const Place& at, size_t begin, const dom::element* value = nullptr, bool copied = true) {
    nodes_.push_back(Node{uint32_t(begin), 0, uint32_t(at.in_list || at.parent < 0 ? begin : at.key_begin), 0,
                          at.parent, at.index, at.key, at.in_list, copied, value != nullptr,
                          value ? *value : dom::element{}});
    return int32_t(nodes_.size() - 1);
  }
  // The pruned object's value at node `n`, when it was copied unpruned:
  // then the pruned text there is exactly that value.
  bool copied_value(int32_t n, dom::element& value) const {
    const Node& x = nodes_[size_t(n)];
    if (!x.copied) return false;
    if (x.has_value) {
      value = x.value;
      return true;
    }
    dom::element parent;  // inside a byte copy: no drops, so written positions are the object's
    if (x.parent < 0 || !copied_value(x.parent, parent)) return false;
    return (x.in_list ? parent.at(x.index) : parent.at_key(x.key)).get(value) == simdjson::SUCCESS;
  }
  void close_node(int32_t id, size_t end) {
    nodes_[size_t(id)].end = uint32_t(end);
    nodes_[size_t(id)].after = uint32_t(nodes_.size());
  }

  // --- Following the source text ---------------------------------------
  // While the pruner walks the DOM it keeps, for the value at hand, the
  // index of its first structural character in the source (stage 1's
  // index: every {}[]:, and the first byte of every string, number and
  // literal, in order), or kNoSource. A container's members are then at
  // known offsets from its bracket: key, ':', value, then ',' or the close.
  // A mismatch with the DOM (a bracket not where the DOM has a container)
  // drops the source for the rest of the walk: the pruner serializes
  // instead. The source must be the text the object was parsed from.
  static constexpr uint32_t kNoSource = Stage1::kNone;
  char at(uint32_t i) const noexcept { return s1_.at(i); }
  static uint32_t plus(uint32_t i, uint32_t n) noexcept { return Stage1::plus(i, n); }
  uint32_t value_end(uint32_t i) const noexcept { return s1_.value_end(i); }
  // Where the object starts in `source`, or kNoSource.
  uint32_t locate(const SourceText& source) {
    if (!s1_.bind(source)) return kNoSource;
    if (source.token != SourceText::kFind) return at(source.token) == '{' ? source.token : kNoSource;
    if (source.field.empty()) return at(0) == '{' ? 0 : kNoSource;
    uint32_t value = s1_.field(source.field);
    return at(value) == '{' ? value : kNoSource;
  }

  // Whether the bytes of the integer token [p, q) are what append_json
  // writes for its value: -?(0|[1-9][0-9]*), short enough to be an int64.
  static bool canonical_integer(const char* p, const char* q) noexcept {
    if (p < q && *p == '-') ++p;
    if (p == q || q - p > 18 || (*p == '0' && q - p > 1)) return false;
    for (; p < q; ++p)
      if (*p < '0' || *p > '9') return false;
    return true;
  }

  // Copies the container whose first structural is `first` from the source,
  // recording its containers, when its bytes are exactly what copy() would
  // write: no backslash (so no escapes, the only way two JSON texts of one
  // string differ), no whitespace between tokens, integers in canonical
  // form. Returns its last structural, or kNoSource having written nothing.
  uint32_t copy_source(JsonOut& out, const Place& place, uint32_t first) {
    if (at(first) != '{' && at(first) != '[') return kNoSource;
    const uint32_t origin = s1_.idx[first];
    const size_t base = out.used(), first_node = nodes_.size();
    open_.clear();
    auto fail = [&] {
      nodes_.resize(first_node);
      return kNoSource;
    };
    // One pass: every token checked, containers recorded, until the bracket
    // that closes the first one. Checks accumulate in `bad` (branches on
    // them would mispredict; only brackets change what the walk does).
    bool bad = false;
    const char* const src = s1_.src;  // locals: the stores below cannot alias them
    const uint32_t* const idx = s1_.idx;
    const uint32_t n = s1_.n;
    for (uint32_t j = first; j < n; ++j) {
      const uint32_t p = idx[j], q = j + 1 < n ? idx[j + 1] : p + 1;  // q: where the next token starts
      const char c = src[p];
      if (c == '"') {  // no backslash (checked below): the next quote closes it, the next token follows at once
        bad |= q < p + 2 || src[q - 1] != '"';
      } else if (c == ':' || c == ',') {
        bad |= q != p + 1;
        open_.back().members += c == ',';
      } else if (c == '{' || c == '[') {
        Place child = place;
        if (j != first) {
          Open& parent = open_.back();
          if (parent.list) {
            child = Place{parent.id, {}, parent.members, true, 0};
          } else {  // "key":{ - the key's opening quote is two structurals back
            uint32_t k = idx[j - 2];
            child = Place{parent.id, std::string_view(src + k + 1, idx[j - 1] - k - 2), 0, false, base + k - origin};
          }
        }
        open_.push_back(Open{open_node(child, base + p - origin), 0, c == '['});
        bad |= q != p + 1;
      } else if (c == '}' || c == ']') {
        close_node(open_.back().id, base + p + 1 - origin);
        open_.pop_back();
        if (open_.empty()) {  // the whole container read: copy it if it passed
          const size_t length = p + 1 - origin;
          if (bad || std::memchr(src + origin, '\\', length)) return fail();
          out.put(std::string_view(src + origin, length));
          return j;
        }
        bad |= q != p + 1;
      } else if (c == 't' || c == 'n') {
        bad |= q != p + 4;
      } else if (c == 'f') {
        bad |= q != p + 5;
      } else {
        bad |= !canonical_integer(src + p, src + q);
      }
    }
    return fail();  // not closed: cannot happen in a text simdjson accepted
  }

  // append_json that records the containers it writes. `first`: the
  // value's first structural in the source (see above). Returns its last.
  uint32_t copy(dom::element e, JsonOut& out, const Place& at_place, uint32_t first) {
    auto type = e.type();
    const bool object = type == dom::element_type::OBJECT;
    if (first != kNoSource && (object || type == dom::element_type::ARRAY)) {
      size_t node = nodes_.size();
      if (uint32_t last = copy_source(out, at_place, first); last != kNoSource) {
        nodes_[node].value = e;
        nodes_[node].has_value = true;
        return last;
      }
      if (at(first) != (object ? '{' : '[')) first = kNoSource;
    }
    if (object) {
      int32_t id = open_node(at_place, out.used(), &e);
      out.put('{');
      uint32_t cursor = first;  // the '{', then each ',': the next member is 3 on (key, ':', value)
      bool any = false;
      for (auto [key, v] : dom::object(e)) {
        if (any) out.put(',');
        any = true;
        size_t key_begin = out.used();
        append_json_string(key, out);
        out.put(':');
        cursor = plus(copy(v, out, Place{id, key, 0, false, key_begin}, plus(cursor, 3)), 1);
      }
      out.put('}');
      close_node(id, out.used());
      return closing(first, cursor, any, '}');
    }
    if (type == dom::element_type::ARRAY) {
      int32_t id = open_node(at_place, out.used(), &e);
      out.put('[');
      uint32_t cursor = first, i = 0;
      for (dom::element v : dom::array(e)) {
        if (i) out.put(',');
        cursor = plus(copy(v, out, Place{id, {}, i++, true}, plus(cursor, 1)), 1);
      }
      out.put(']');
      close_node(id, out.used());
      return closing(first, cursor, i > 0, ']');
    }
    append_json(e, out);
    return first;  // a scalar is one token
  }

  // The close bracket of a container that opened at `first` and whose last
  // member ended just before `cursor`; kNoSource if it is not there.
  uint32_t closing(uint32_t first, uint32_t cursor, bool any, char bracket) const noexcept {
    uint32_t close = any ? cursor : plus(first, 1);
    return at(close) == bracket ? close : kNoSource;
  }

  uint32_t write(dom::element e, uint64_t alive, JsonOut& out, const Place& at_place, uint32_t first) {
    if (alive == 0) return copy(e, out, at_place, first);
    if (e.type() == dom::element_type::OBJECT) {
      if (at(first) != '{') first = kNoSource;
      int32_t id = open_node(at_place, out.used(), &e, false);
      out.put('{');
      uint32_t cursor = first;
      bool written = false, any = false;
      if (!identity_.empty()) {  // the root object lacks kind/apiVersion (see identify())
        out.put(std::string_view(identity_).substr(0, identity_.size() - 1));
        identity_.clear();
        written = true;
      }
      for (auto [key, v] : dom::object(e)) {
        uint32_t value = plus(cursor, 3);
        any = true;
        model::Segment seg{model::Segment::Kind::key, key, 0, {}, {}};
        uint64_t child_alive;
        auto action = step(alive, seg, child_alive);
        if (action == Action::drop) {
          cursor = plus(value_end(value), 1);
          continue;
        }
        if (written) out.put(',');
        written = true;
        size_t key_begin = out.used();
        append_json_string(key, out);
        out.put(':');
        if (action == Action::redact) {
          redact(v, out);
          cursor = plus(value_end(value), 1);
        } else {
          path_.push_back(seg);
          cursor = plus(write(v, child_alive, out, Place{id, key, 0, false, key_begin}, value), 1);
          path_.pop_back();
        }
      }
      out.put('}');
      close_node(id, out.used());
      return closing(first, cursor, any, '}');
    }
    if (e.type() == dom::element_type::ARRAY) {
      if (at(first) != '[') first = kNoSource;
      dom::array arr(e);
      std::string_view key = choose_key(keys_->candidates(path_), {arr});
      int32_t id = open_node(at_place, out.used(), &e, false);
      out.put('[');
      uint32_t written = 0, cursor = first;
      size_t i = 0;
      for (dom::element v : arr) {
        uint32_t value = plus(cursor, 1);
        model::Segment seg{model::Segment::Kind::index, {}, i++, {}, {}};
        if (!key.empty() && key_text(dom::object(v)[key].value_unsafe(), seg.value, scratch_)) {
          seg.kind = model::Segment::Kind::keyed;
          seg.field = key;
        }
        uint64_t child_alive;
        auto action = step(alive, seg, child_alive);
        if (action == Action::drop) {
          cursor = plus(value_end(value), 1);
          continue;
        }
        if (written) out.put(',');
        Place place{id, {}, written++, true};
        if (action == Action::redact) {
          redact(v, out);
          cursor = plus(value_end(value), 1);
        } else {
          path_.push_back(seg);
          cursor = plus(write(v, child_alive, out, place, value), 1);
          path_.pop_back();
        }
      }
      out.put(']');
      close_node(id, out.used());
      return closing(first, cursor, i > 0, ']');
    }
    append_json(e, out);
    return first;
  }

  void redact(dom::element v, JsonOut& out) {
    if (v.type() == dom::element_type::STRING) {
      append_json_string(redacted_marker(*redaction_key_, std::string_view(v)), out);
    } else {
      std::string raw;
      append_json(v, raw);  // rare: a non-string value under a redacted path
      append_json_string(redacted_marker(*redaction_key_, raw), out);
    }
  }

  const ListKeys* keys_;
  const std::string* redaction_key_;  // the detector's: outlives its rules
  std::vector<Rule> rules_;
  std::vector<model::Segment> path_;
  std::vector<std::unique_ptr<std::string>> scratch_;
  std::vector<Node> nodes_;
  std::vector<KeyedElement> keyed_;             // element_segment()'s
  std::string kind_field_, api_version_field_;  // see identify()
  std::string identity_;                        // what the root object of the prune() under way lacks of them, or ""
  std::string buffer_;  // prune()'s output, reused: a cached object is copied out at its exact size
  Stage1 s1_;           // the source of the prune() under way (see "Following the source text")
  struct Open {         // a container copy_source() is inside
    int32_t id;
    uint32_t members;  // commas seen: the index of the next element
    bool list;
  };
  std::vector<Open> open_;
};

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

std::string string_at(dom::element e, std::string_view key) {
  std::string_view s;
  if (e[key].get(s) == simdjson::SUCCESS) return std::string(s);
  return {};
}

// Reads metadata.managedFields into `out`, reusing its strings' storage (a
// status-only update rewrites them in place, without allocating).
void extract_managers(dom::element object, std::vector<model::ManagerEntry>& out) {
  dom::array fields;
  size_t n = 0;
  if (object.at_pointer("/metadata/managedFields").get(fields) == simdjson::SUCCESS) {
    auto assign = [](dom::object f, std::string_view key, std::string& to) {
      std::string_view v;
      if (f[key].get(v) != simdjson::SUCCESS) v = {};
      to.assign(v);
    };
    for (dom::element e : fields) {
      dom::object f;
      if (e.get(f) != simdjson::SUCCESS) continue;
      if (n == out.size()) out.emplace_back();
      model::ManagerEntry& m = out[n++];
      assign(f, "manager", m.manager);
      assign(f, "operation", m.operation);
      assign(f, "time", m.time);
      assign(f, "subresource", m.subresource);
    }
  }
  out.resize(n);
}

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

// The actor: the manager whose managedFields entry moved with this event:
// an entry that is new, or whose time is newer than before. (An entry can
// lack a time: the scale subresource writes none in v1.24; a new one still
// counts.) When several moved (a controller and a user in the same second),
// the one whose fieldsV1 holds a changed path wins; then the newest, with
// status-subresource entries last, since status churn is not what a change
// set reports by default. Never guessed: absent when no entry moved.
std::optional<model::Actor> find_actor(const std::vector<model::ManagerEntry>* before,
                                       const std::vector<model::ManagerEntry>& after, dom::element object = {},
                                       const std::vector<model::FieldChange>* changes = nullptr) {
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

}  // namespace

void validate(const model::DiffOptions& options) {
  for (const auto& p : options.ignore_paths) model::PathPattern::parse(p);
  for (const auto& p : options.redact_paths) model::PathPattern::parse(p);
}

ChangeDetector::ChangeDetector(std::string cluster, model::DiffOptions options)
    : cluster_(std::move(cluster)), options_(std::move(options)) {
  validate(options_);
  if (options_.redaction_key.empty()) options_.redaction_key = random_redaction_key();
}

ChangeDetector::~ChangeDetector() = default;

ChangeDetector::Rules& ChangeDetector::rules_for(const model::ResourceType& type) {
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
  auto rules = std::make_unique<Rules>(list_keys(type), options_.redaction_key);
  rules->identify(type.kind, type.group.empty() ? type.version : type.group + "/" + type.version);
  for (auto p : kNoisePaths) rules->add(p, Rules::Action::drop);
  bool status_wanted = std::any_of(options_.include_status.begin(), options_.include_status.end(),
                                   [&](const std::string& n) { return type.named_by(n); });
  if (!status_wanted) rules->add("status", Rules::Action::drop);
  for (const auto& p : options_.ignore_paths) rules->add(p, Rules::Action::drop);
  if (type.group.empty() && type.resource == "secrets") {
    rules->add("data.*", Rules::Action::redact);
    rules->add("stringData.*", Rules::Action::redact);
  }
  for (const auto& p : options_.redact_paths) rules->add(p, Rules::Action::redact);
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
// The cached form of an object whose pruned text is `pruned`.
model::StoredObject stored_object(dom::element object, std::string_view pruned) {
  model::StoredObject stored;
  stored.json.assign(pruned);  // exactly its size: cached for the object's life
  dom::element metadata;       // an object without metadata (a hand-written manifest) has no uid or version
  if (object.type() == dom::element_type::OBJECT && object["metadata"].get(metadata) == simdjson::SUCCESS &&
      metadata.type() == dom::element_type::OBJECT) {
    stored.uid = string_at(metadata, "uid");
    stored.resource_version = string_at(metadata, "resourceVersion");
  }
  extract_managers(object, stored.managers);
  return stored;
}
}  // namespace

model::StoredObject ChangeDetector::prune(const model::ResourceType& type, dom::element object,
                                          const SourceText* source) {
  return stored_object(object, rules_for(type).prune(object, source));
}

Result<bool> ChangeDetector::seed(const model::ResourceType& type, dom::element object, model::ObjectStore& store,
                                  const SourceText* source) {
  dom::element metadata;
  if (object.type() != dom::element_type::OBJECT || object["metadata"].get(metadata) != simdjson::SUCCESS)
    return Result<bool>::failure("object has no metadata");
  std::string name = string_at(metadata, "name");
  if (name.empty()) return Result<bool>::failure("object has no metadata.name");
  store.put(model::ObjectStore::key_of(string_at(metadata, "namespace"), name), prune(type, object, source));
  return true;
}

std::optional<model::ChangeSet> ChangeDetector::forget(const model::ResourceType& type, std::string_view store_key,
                                                       model::ObjectStore& store, std::string_view observed_at,
                                                       std::string_view list_rv) {
  const model::StoredObject* old = store.find(store_key);
  if (!old) return std::nullopt;
  model::ChangeSet cs;
  cs.type = model::ChangeType::deleted;
  cs.cluster = cluster_;
  cs.observed_at.assign(observed_at);
  cs.resource = type;
  auto slash = store_key.find('/');
  cs.object_namespace.assign(store_key.substr(0, slash));
  cs.name.assign(store_key.substr(slash + 1));
  cs.uid = old->uid;
  cs.resource_version.assign(list_rv);
  cs.id = model::change_set_id(cluster_, cs.type, cs.uid, cs.object_namespace, cs.name, cs.resource_version);
  cs.old_object = old->json;
  cs.summary = model::summarize(cs);
  store.erase(store_key);
  ++stats_.change_sets;
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
  std::string key = model::ObjectStore::key_of(ns, name);
  model::StoredObject* old = store.find_mutable(key);

  if (event != model::WatchEventType::deleted && old && !rv.empty() && rv == old->resource_version) {
    ++stats_.redeliveries;
    return std::optional<model::ChangeSet>{};
  }
  Rules& rules = rules_for(type);
  std::string_view pruned = rules.prune(object, source);
  if (event != model::WatchEventType::deleted && old && old->json == pruned) {
    // Status or bookkeeping churn, most events in a cluster: only the
    // resourceVersion and the managers move, updated in place.
    old->resource_version.assign(rv);
    extract_managers(object, old->managers);
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
    model::StoredObject now = stored_object(object, pruned);
    identify();
    cs.type = model::ChangeType::added;
    cs.actor = find_actor(nullptr, now.managers);
    cs.new_object = now.json;
    store.put(std::move(key), std::move(now));
  } else {
    // Diff only the subtree holding the changed bytes when there is one.
    Rules::Subtree where;
    if (whole_objects_ || !rules.changed_subtree(old->json, pruned, where, old_parser_)) {
      where = Rules::Subtree{pruned, {}, {}, {}, false, {}};
      if (old_parser_.parse(old->json).get(where.old_value) != simdjson::SUCCESS)
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
      if (options_.include_objects) cs.old_object = std::move(old->json);
      old->json.assign(pruned);
      old->uid.assign(uid);
      old->resource_version.assign(rv);
      old->managers.swap(managers_);
    };
    if (cs.changes.empty()) {  // e.g. a keyed list reordered
      ++stats_.noise;
      update_cache();
      return std::optional<model::ChangeSet>{};
    }
    identify();
    cs.type = model::ChangeType::modified;
    cs.actor = find_actor(&old->managers, managers_, object, &cs.changes);
    update_cache();
    if (options_.include_objects) cs.new_object = pruned;
  }
  cs.id = model::change_set_id(cluster_, cs.type, uid, ns, name, rv);
  cs.summary = model::summarize(cs);
  ++stats_.change_sets;
  return std::optional<model::ChangeSet>{std::move(cs)};
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
  std::string key = model::ObjectStore::key_of(ns, name);
  const model::StoredObject* old = store.find(key);
  if (!old || old->uid.empty() || old->uid == uid) return std::nullopt;
  return forget(type, key, store, observed_at, rv);
}

}  // namespace kubetrail::diff
