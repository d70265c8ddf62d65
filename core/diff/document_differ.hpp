// The structural diff of two JSON documents, with Kubernetes' merge keys.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "diff/list_keys.hpp"
#include "model/change_set.hpp"
#include "model/path.hpp"

namespace kubetrail::diff {

// Where the containers of a pruned text were written, and which of them are
// provably the same bytes as in the text's previous version: the differ
// skips those without walking them (an image bump then walks one container's
// scalars, not every env var, port and mount of the Pod).
//
// The new text is the old text's first `prefix` bytes, then the differing
// bytes (the region, up to `suffix_from`), then the old text's last bytes.
// A container wholly before the region is the same value as the one the
// differ pairs it with, always: a parser reads identical bytes identically.
// A container wholly after it is too when `suffix_aligned` (the differing
// bytes hold no quote or backslash, so the suffix is not read as inside a
// string in one text and outside in the other) and it is paired by name or
// merge key (a list paired by index can pair it with a shifted neighbour).
// Then reading the texts backwards from their common end meets the same
// tokens at the same depths, up to the container's name. Assumes no object
// repeats a key, as the API server guarantees.
struct UnchangedBytes {
  struct Node {
    uint32_t begin = 0, end = 0;  // its bytes in the new text
    uint32_t key_begin = 0;       // where its "name": starts; = begin in a list
    uint32_t after = 0;           // index of the first node after its subtree
    int32_t parent = -1;
    uint32_t index = 0;    // position in the parent list, as written
    std::string_view key;  // name in the parent object
    bool in_list = false;
    bool copied = false;                // written unpruned: the same value as in the object pruned
    bool has_value = false;             // `value` is known (not inside a byte copy)
    simdjson::dom::element value = {};  // the object's value it was written from
    // A byte copy whose inner containers are not recorded (yet): its first
    // structural in the source, else UINT32_MAX. Such a node has no
    // children here (`after` is the next node); the pruner records them
    // when the diff needs them (Pruner::changed_subtree).
    uint32_t unrecorded = UINT32_MAX;
  };
  std::span<const Node> nodes;
  int32_t root = -1;  // the node of the two values diffed
  uint32_t prefix = 0, suffix_from = 0;
  bool suffix_aligned = false;

  // The container child of `parent` named `key` / at `index`, or -1.
  // `next`: where the last child found of `parent` ends (0 before the
  // first). The differ asks for children in document order nearly always,
  // so the search starts there, and probes at most kProbes nodes from there
  // and kProbes from the first child: asked out of order, a parent of many
  // children costs no scan per child (a list of 40,000 took 1.7 s an
  // event). -1 then only means the differ walks that child in full.
  static constexpr int kProbes = 8;
  int32_t child(int32_t parent, std::string_view key, uint32_t& next) const noexcept;
  int32_t child(int32_t parent, uint32_t index, uint32_t& next) const noexcept;
  // Whether node `n`, paired by name or merge key (or by index), is the
  // same bytes as its counterpart.
  bool same(int32_t n, bool paired_by_name) const noexcept {
    const Node& x = nodes[size_t(n)];
    return x.end <= prefix || (paired_by_name && suffix_aligned && x.key_begin >= suffix_from);
  }
};

// The structural diff of two JSON documents (both already pruned), with
// Kubernetes' merge keys for lists. Exposed for `kubetrail diff` and tests.
class DocumentDiffer {
 public:
  // `at`: the path of the two values when they are parts of larger
  // documents (the changes' paths start with it, and list keys see it).
  // `unchanged`: what the differ may skip, when the new value's text layout
  // is known (see UnchangedBytes).
  void diff(simdjson::dom::element old_doc, simdjson::dom::element new_doc, std::vector<model::FieldChange>& out,
            const ListKeys& keys = ListKeys::builtin_only(), std::span<const model::Segment> at = {},
            const UnchangedBytes* unchanged = nullptr);

 private:
  void diff_value(simdjson::dom::element a, simdjson::dom::element b, std::vector<model::FieldChange>& out);
  void diff_object(simdjson::dom::object a, simdjson::dom::object b, std::vector<model::FieldChange>& out);
  void diff_array(simdjson::dom::array a, simdjson::dom::array b, std::vector<model::FieldChange>& out);
  void emit(model::FieldOp op, const simdjson::dom::element* a, const simdjson::dom::element* b,
            std::vector<model::FieldChange>& out);
  std::vector<model::Segment> path_;
  template <class Id>
  void diff_child(simdjson::dom::element a, simdjson::dom::element b, Id id, bool paired_by_name, uint32_t& next_child,
                  std::vector<model::FieldChange>& out);
  std::vector<std::unique_ptr<std::string>> scratch_;  // owned texts of numeric list keys
  const ListKeys* keys_ = &ListKeys::builtin_only();
  const UnchangedBytes* unchanged_ = nullptr;
  int32_t node_ = -1;  // the unchanged_ node of the b value being walked; -1: unknown
};

}  // namespace kubetrail::diff
