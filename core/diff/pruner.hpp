// The pruner: what an object is cached as - noise dropped, secrets
// redacted, kind/apiVersion filled in - and where two pruned texts differ.
// Pruning rules: what is dropped and what is redacted before an object is
// cached, compiled per resource type. Rules are matched while walking with a
// bitmask of the rules still alive at each depth, so a subtree no rule can
// reach is copied without looking at its paths.
//
// Internal to diff/ (ChangeDetector holds one per resource type). Defined
// in the header, and included by change_detector.cpp alone: prune() and
// its walk run for every object, and keeping them in the detector's
// translation unit keeps them inlined as they were (bench/diff_bench).
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/json_writer.hpp"
#include "diff/common_bytes.hpp"
#include "diff/document_differ.hpp"
#include "diff/json_values.hpp"
#include "diff/list_keys.hpp"
#include "diff/merge_keys.hpp"
#include "diff/redaction.hpp"
#include "diff/source_text.hpp"
#include "diff/stage1.hpp"
#include "model/path.hpp"

namespace kubetrail::diff {

class Pruner {
 public:
  enum class Action : unsigned char { drop, redact };
  static constexpr size_t kMaxRules = model::PatternSteps::kMax;

  Pruner(const ListKeys& keys, const std::string& redaction_key) : keys_(&keys), redaction_key_(&redaction_key) {}
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
    rules_.add(model::PathPattern::parse(pattern));
    if (action == Action::drop) drops_ |= uint64_t{1} << (rules_.size() - 1);
  }

  // The pruned text of `object`, valid until the next call. `source`: the
  // text it was parsed from, if known (see SourceText). `for_diff`: its
  // containers are recorded for changed_subtree(); an object only stored
  // (a list item seeding the cache) needs none. A container copied byte for
  // byte is recorded alone, and its inner containers only if
  // changed_subtree() looks inside it - so `source` must stay valid until
  // then (perf: recording every container of a Pod's spec, when most
  // events change nothing in it, was half of the copy's cost).
  std::string_view prune(dom::element object, const SourceText* source = nullptr, bool for_diff = true) {
    const std::string_view text = prune_once(object, source, for_diff);
    if (hollow_taken_ == hollow_.size() / 2) return text;
    // A member the parse left out of the DOM (SourceText::hollow) was
    // neither copied from the source nor skipped as dropped: the walk lost
    // its place in the source before it, and wrote it from its empty DOM
    // as {} - a change that never happened, cached. No input is known to
    // do this (the tests and fuzz_diff compare hollowed prunes with plain
    // ones); should one, the text is parsed again whole and pruned from
    // that, slower but right, and counted (reparsed()).
    ++reparsed_;
    return prune_once(parse_whole(*source), nullptr, for_diff);
  }

  // How many prune()s found a hollowed member not taken from the source
  // and pruned a whole parse instead (see prune()). Expected to stay 0.
  uint64_t reparsed() const noexcept { return reparsed_; }

  // The members of the last prune()'s object copied from the source as they
  // were and in the form hollow_end() accepts, as (offset, size) in its
  // text: the next version of the object whose member has exactly these
  // bytes need not be checked again (ChangeDetector::parse_event).
  std::span<const std::pair<uint32_t, uint32_t>> verbatim() const noexcept { return verbatim_; }

  // Whether top-level member `key` of an object is only dropped or copied
  // whole by prune() (no rule reaches inside it, none redacts it), so that
  // a parse may leave its value out of the DOM (diff/hollow_parse.hpp). The
  // caller rules out members other code reads (metadata, an Event's).
  bool opaque(std::string_view key) {
    for (const auto& [name, answer] : opaque_)
      if (name == key) return answer;
    uint64_t inside = 0;
    path_.clear();
    const bool answer =
        step(rules_.all(), model::Segment{model::Segment::Kind::key, key, 0, {}, {}}, inside) != Action::redact &&
        inside == 0;
    if (opaque_.size() < 16) opaque_.emplace_back(std::string(key), answer);  // an object's names, not a hostile one's
    return answer;
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
      // A byte copy holding the region: its inner containers recorded now,
      // and looked through next.
      if (deepest == int32_t(i) && n.unrecorded != kNoSource && deepest > 0) record_inside(deepest);
    }
    if (deepest <= 0) return false;  // the root, or nothing recorded
    // The chain root..deepest, and the path of each node on it.
    std::vector<int32_t> chain;
    for (int32_t i = deepest; i >= 0; i = nodes_[i].parent) chain.push_back(i);
    std::reverse(chain.begin(), chain.end());
    std::vector<model::Segment> path;
    path.reserve(chain.size());  // grown one segment at a time it reallocated per event (perf: 3% of the watch thread)
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
  std::string_view prune_once(dom::element object, const SourceText* source, bool for_diff) {
    recording_ = for_diff;
    verbatim_.clear();
    last_verbatim_ = {};
    path_.clear();
    scratch_.clear();
    nodes_.clear();
    const uint64_t all = rules_.all();
    identity_.clear();
    if (!kind_field_.empty() && object.type() == dom::element_type::OBJECT) {
      // One pass over the top-level keys for both (each lookup of a key a
      // list item lacks is a pass, each key a cache miss into the tape).
      bool kind = false, api_version = false;
      for (auto [key, value] : dom::object(object)) {
        kind |= key == "kind";
        api_version |= key == "apiVersion";
      }
      if (!kind) identity_.append(kind_field_).push_back(',');
      if (!api_version) identity_.append(api_version_field_).push_back(',');
    }
    JsonOut text = JsonOut::reusing(buffer_);
    hollow_ = source ? source->hollow : std::span<const uint32_t>{};
    ends_ = source ? source->ends : std::span<const uint32_t>{};
    hollow_taken_ = 0;
    const uint32_t last = write(object, all, text, Place{}, source ? locate(*source) : kNoSource);
    if (all == 0 && last != kNoSource) hollow_taken_ = hollow_.size() / 2;  // no rules: the root copied whole
    if (source && source->end) *source->end = last;  // kNoSource when the source was not followed to the end
    if (!for_diff) s1_ = {};                         // the source is the caller's: kept only for changed_subtree()
    return text.view();
  }

  // The object of `source` parsed again whole, by a parser of this pruner's
  // own (the caller's DOM, which lacks the hollowed members, stays valid).
  // The text parsed once already, and a hollowing parse accepts exactly
  // what a whole one does (diff/hollow_parse.hpp).
  dom::element parse_whole(const SourceText& source) {
    whole_text_ = simdjson::padded_string(source.text);
    dom::element doc;
    if (source.token != SourceText::kFind || whole_parser_.parse(whole_text_).get(doc) != simdjson::SUCCESS ||
        (!source.field.empty() && doc[source.field].get(doc) != simdjson::SUCCESS))
      throw Error("internal: an object that parsed once does not parse whole");
    return doc;
  }

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

  // step() for a member of a container being written whose value starts at
  // `value`: a member dropped moves `cursor` past its value. `parent`: the
  // container's first structural when this is its last member (else
  // kNoSource): past the member is then the container's close, known
  // without walking the member when the parse found it (SourceText::ends).
  std::optional<Action> step_member(uint64_t alive, const model::Segment& seg, uint64_t& child_alive, uint32_t value,
                                    uint32_t& cursor, uint32_t parent) {
    auto action = step(alive, seg, child_alive);
    if (action == Action::drop) {
      // A hollowed member dropped is taken too (only the root's members are
      // hollowed: one lookup for the few the root drops, none below).
      hollow_taken_ += path_.empty() && !hollow_.empty() && hollow_last(value) != kNoSource;
      const uint32_t close = parent == kNoSource ? kNoSource : last_in(ends_, parent);
      cursor = close != kNoSource ? close : plus(end_of(value), 1);
    }
    return action;
  }

  // Which rules a child at `seg` keeps alive, and whether one ends there.
  std::optional<Action> step(uint64_t alive, const model::Segment& seg, uint64_t& child_alive) const {
    const size_t depth = path_.size();
    const uint64_t hit = rules_.matching(alive, depth, seg), ends = hit & rules_.ending(depth);
    child_alive = hit & ~ends;
    if (!ends) return std::nullopt;
    return ends & drops_ ? Action::drop : Action::redact;  // drop wins
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
    // Filled in place: a Node built aside and copied in was read back in
    // 16-byte loads from its 4-byte stores, a store-forwarding stall (perf:
    // a quarter of the source copy's samples on the bench's pods).
    Node& node = nodes_.emplace_back();
    node.begin = uint32_t(begin);
    node.key_begin = uint32_t(at.in_list || at.parent < 0 ? begin : at.key_begin);
    node.parent = at.parent;
    node.index = at.index;
    node.key = at.key;
    node.in_list = at.in_list;
    node.copied = copied;
    if (value) {
      node.has_value = true;
      node.value = *value;
    }
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
  // The last structural of the container whose first is `first` in
  // (first, last) pairs in document order, or kNoSource. A binary search: a
  // hostile object can have a million of them - scanned once per container
  // copied, 100,000 took 3.9 s to prune.
  static uint32_t last_in(std::span<const uint32_t> pairs, uint32_t first) noexcept {
    size_t lo = 0, hi = pairs.size() / 2;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (pairs[2 * mid] < first)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo < pairs.size() / 2 && pairs[2 * lo] == first ? pairs[2 * lo + 1] : kNoSource;
  }
  // The last structural of a container the parse left out of the DOM whose
  // first is `first` (SourceText::hollow), or kNoSource.
  uint32_t hollow_last(uint32_t first) const noexcept { return last_in(hollow_, first); }
  // value_end(), without a walk for a container the parse checked.
  uint32_t end_of(uint32_t i) const noexcept {
    const uint32_t last = hollow_last(i);
    return last != kNoSource ? last : value_end(i);
  }
  // Where the object starts in `source`, or kNoSource.
  uint32_t locate(const SourceText& source) {
    if (!s1_.bind(source)) return kNoSource;
    if (source.token != SourceText::kFind) return at(source.token) == '{' ? source.token : kNoSource;
    if (source.field.empty()) return at(0) == '{' ? 0 : kNoSource;
    uint32_t value = s1_.field(source.field);
    return at(value) == '{' ? value : kNoSource;
  }

  // Walks the container whose first structural is `first` in the source,
  // checking that its bytes are exactly what copy() would write: no
  // backslash (so no escapes, the only way two JSON texts of one string
  // differ), no whitespace between tokens, integers in canonical form.
  // Returns its last structural, or kNoSource. `kRecord`: records its inner
  // containers in nodes_ as it goes, as children of node `root`, at their
  // places in a copy written at `base` (record_inside()); else only their
  // depth is counted (copy(): most copies are never looked inside).
  //
  // The whitespace check is one load a token: in a text simdjson accepted,
  // only whitespace can lie between a token's last byte and the next
  // token, so the byte before each token but the first is the last of the
  // one before it exactly when nothing lies between them (a string's
  // closing quote, a bracket, ':', ',', a literal's or number's last
  // character - none of them whitespace). Bytes before the first token and
  // after the last are not the container's and are not looked at.
  template <bool kRecord>
  uint32_t walk_source(uint32_t first, size_t base = 0, int32_t root = -1) {
    if (at(first) != '{' && at(first) != '[') return kNoSource;
    const char* const src = s1_.src;  // locals: the stores below cannot alias them
    const uint32_t* const idx = s1_.idx;
    const uint32_t n = s1_.n;
    const uint32_t origin = idx[first];
    if constexpr (kRecord) {
      open_.clear();
      open_.push_back(Open{root, 0, src[origin] == '['});
    }
    int depth = 1, deepest = 1;
    uint32_t members = 0;  // commas seen in the innermost open container: the index of its next element
    // Checks accumulate in `bad` (branches on them would mispredict); only
    // brackets and numbers, a few tokens in ten, leave the straight path.
    bool bad = false;
    for (uint32_t j = first + 1; j < n; ++j) {
      const uint32_t p = idx[j];
      const char c = src[p];
      bad |= kSpaceByte[static_cast<unsigned char>(src[p - 1])];
      if constexpr (kRecord) members += c == ',';
      const TokenKind kind = kTokenKinds[static_cast<unsigned char>(c)];
      if (kind == TokenKind::other) continue;  // a string, ':', ',' or a literal: checked by the line above
      if (kind == TokenKind::open) {
        deepest = std::max(deepest, ++depth);
        if constexpr (kRecord) {
          Open& parent = open_.back();
          parent.members = members;
          Place child;
          if (parent.list) {
            child = Place{parent.id, {}, members, true, 0};
          } else {  // "key":{ - the key's opening quote is two structurals back
            const uint32_t k = idx[j - 2];
            child = Place{parent.id, std::string_view(src + k + 1, idx[j - 1] - k - 2), 0, false, base + k - origin};
          }
          open_.push_back(Open{open_node(child, base + p - origin), 0, c == '['});
          members = 0;
        }
      } else if (kind == TokenKind::close) {
        if (--depth == 0) {  // the whole container read
          if (bad || std::memchr(src + origin, '\\', p + 1 - origin)) break;
          walked_depth_ = deepest;
          return j;
        }
        if constexpr (kRecord) {
          close_node(open_.back().id, base + p + 1 - origin);
          open_.pop_back();
          members = open_.back().members;
        }
      } else {  // a number: never a container's last token, so another follows
        const uint32_t q = j + 1 < n ? idx[j + 1] : p + 1;
        bad |= !Stage1::canonical_integer(src + p, src + q);
      }
    }
    return kNoSource;  // not closed: not in a text simdjson accepted
  }

  // Records the containers inside byte copy `at` (Node::unrecorded), in
  // document order right after it, renumbering the nodes after them.
  void record_inside(int32_t at) {
    const size_t old_size = nodes_.size(), a = size_t(at);
    const uint32_t first = nodes_[a].unrecorded;
    nodes_[a].unrecorded = kNoSource;
    if (walk_source<true>(first, nodes_[a].begin, at) == kNoSource) {  // it was copied: cannot fail
      nodes_.resize(old_size);
      return;
    }
    const size_t k = nodes_.size() - old_size;  // recorded, at the end for now
    if (k == 0) return;
    for (size_t i = 0; i < old_size; ++i) {  // the nodes after `at` move k on
      Node& x = nodes_[i];
      if (x.parent > at) x.parent += int32_t(k);
      if (x.after > a) x.after += uint32_t(k);
    }
    nodes_[a].after = uint32_t(a + 1 + k);
    for (size_t i = old_size; i < nodes_.size(); ++i) {  // the recorded ones move to a + 1
      Node& x = nodes_[i];
      if (x.parent != at) x.parent = int32_t(size_t(x.parent) - old_size + a + 1);
      x.after = uint32_t(x.after - old_size + a + 1);
    }
    std::rotate(nodes_.begin() + ptrdiff_t(a + 1), nodes_.begin() + ptrdiff_t(old_size), nodes_.end());
    // The differ trusts these numbers to skip unchanged containers: checked
    // here (a few instructions a node, and only for a change inside a copy)
    // rather than risk a change left out.
    if (!nodes_in_order()) throw Error("internal error: the pruner's record of containers is out of order");
  }
  // Whether nodes_ is a tree in document order: each node after its parent,
  // inside its parent's bytes and subtree, and its subtree contiguous.
  bool nodes_in_order() const noexcept {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Node& x = nodes_[i];
      if (x.after <= i || x.after > nodes_.size() || (i > 0 && nodes_[i - 1].begin >= x.begin)) return false;
      if (x.parent < 0) continue;
      const Node& parent = nodes_[size_t(x.parent)];
      if (size_t(x.parent) >= i || x.after > parent.after || x.begin < parent.begin || x.end > parent.end) return false;
    }
    return true;
  }
  enum class TokenKind : unsigned char { other, open, close, number };
  static constexpr auto kTokenKinds = [] {
    std::array<TokenKind, 256> kinds{};
    kinds['{'] = kinds['['] = TokenKind::open;
    kinds['}'] = kinds[']'] = TokenKind::close;
    kinds['-'] = TokenKind::number;
    for (char d = '0'; d <= '9'; ++d) kinds[static_cast<unsigned char>(d)] = TokenKind::number;
    return kinds;
  }();
  static constexpr auto kSpaceByte = [] {  // JSON's whitespace
    std::array<bool, 256> space{};
    space[' '] = space['\t'] = space['\n'] = space['\r'] = true;
    return space;
  }();

  // append_json that records the containers it writes. `first`: the
  // value's first structural in the source (see above). Returns its last.
  uint32_t copy(dom::element e, JsonOut& out, const Place& at_place, uint32_t first) {
    auto type = e.type();
    const bool object = type == dom::element_type::OBJECT;
    if (first != kNoSource && (object || type == dom::element_type::ARRAY)) {
      // Left out of the DOM by the parse (diff/hollow_parse.hpp), which
      // checked it and found its end: copied as it is, its value not at
      // hand (e is an empty container), so not `copied` for copied_value().
      uint32_t last = hollow_last(first);
      const bool hollow = last != kNoSource;
      hollow_taken_ += hollow;
      if (!hollow) last = walk_source<false>(first);
      if (last != kNoSource) {
        const size_t begin = out.used();
        out.put(std::string_view(s1_.src + s1_.idx[first], s1_.idx[last] + 1 - s1_.idx[first]));
        // Bytes hollow_end() accepts: checked by it, or walked (the rules it
        // checks but JSON's grammar, which stage 2 checked) within its depth.
        if (hollow || walked_depth_ <= kMaxHollowDepth) last_verbatim_ = {begin, out.used()};
        if (recording_) {  // alone: see prune() and record_inside()
          const int32_t id = open_node(at_place, begin, hollow ? nullptr : &e, !hollow);
          close_node(id, out.used());
          // A member stage 1 ran around (HollowParse::split) has its
          // brackets adjacent in the index: nothing inside to record from
          // it, so a change found inside is diffed as the whole member.
          nodes_[size_t(id)].unrecorded = hollow && last == first + 1 ? kNoSource : first;
        }
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
      const dom::object members(e);
      size_t left = members.size();
      for (auto [key, v] : members) {
        uint32_t value = plus(cursor, 3);
        any = true;
        model::Segment seg{model::Segment::Kind::key, key, 0, {}, {}};
        uint64_t child_alive;
        auto action = step_member(alive, seg, child_alive, value, cursor, --left == 0 ? first : kNoSource);
        if (action == Action::drop) continue;
        if (written) out.put(',');
        written = true;
        size_t key_begin = out.used();
        append_json_string(key, out);
        out.put(':');
        if (action == Action::redact) {
          redact(v, out);
          cursor = plus(value_end(value), 1);
        } else {
          const bool top = path_.empty();
          const size_t value_begin = out.used();
          path_.push_back(seg);
          cursor = plus(write(v, child_alive, out, Place{id, key, 0, false, key_begin}, value), 1);
          path_.pop_back();
          if (top && last_verbatim_ == std::pair{value_begin, out.used()})
            verbatim_.emplace_back(uint32_t(value_begin), uint32_t(out.used() - value_begin));
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
      const size_t count = arr.size();
      for (dom::element v : arr) {
        uint32_t value = plus(cursor, 1);
        model::Segment seg{model::Segment::Kind::index, {}, i++, {}, {}};
        if (!key.empty() && key_text(dom::object(v)[key].value_unsafe(), seg.value, scratch_)) {
          seg.kind = model::Segment::Kind::keyed;
          seg.field = key;
        }
        uint64_t child_alive;
        auto action = step_member(alive, seg, child_alive, value, cursor, i == count ? first : kNoSource);
        if (action == Action::drop) continue;
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
  model::PatternSteps rules_;         // bit i: the i-th rule added
  uint64_t drops_ = 0;                // the rules that drop (the others redact)
  std::vector<model::Segment> path_;
  std::vector<std::unique_ptr<std::string>> scratch_;
  std::vector<Node> nodes_;
  std::vector<KeyedElement> keyed_;                   // element_segment()'s
  std::vector<std::pair<std::string, bool>> opaque_;  // opaque()'s answers
  std::span<const uint32_t> hollow_;                  // the source's hollowed containers (SourceText::hollow)
  std::span<const uint32_t> ends_;                    // other containers whose ends it knows (SourceText::ends)
  size_t hollow_taken_ = 0;             // hollowed containers the prune() under way copied or dropped (see prune())
  uint64_t reparsed_ = 0;               // see reparsed()
  simdjson::padded_string whole_text_;  // parse_whole()'s
  dom::parser whole_parser_;            // parse_whole()'s: allocates at its first parse, if ever
  std::string kind_field_, api_version_field_;  // see identify()
  std::string identity_;                        // what the root object of the prune() under way lacks of them, or ""
  std::string buffer_;     // prune()'s output, reused: a cached object is copied out at its exact size
  Stage1 s1_;              // the source of the prune() under way (see "Following the source text")
  bool recording_ = true;  // the prune() under way records the containers copied from the source
  std::vector<std::pair<uint32_t, uint32_t>> verbatim_;  // see verbatim()
  std::pair<size_t, size_t> last_verbatim_;              // the last copy() of the source's bytes
  int walked_depth_ = 0;                                 // how deep the last walk_source() went
  struct Open {                                          // a container walk_source() is inside
    int32_t id;
    uint32_t members;  // commas seen: the index of the next element
    bool list;
  };
  std::vector<Open> open_;
};

}  // namespace kubetrail::diff
