#include "diff/source_text.hpp"

#include "diff/stage1.hpp"

namespace kubetrail::diff {

ListItemSources::ListItemSources(const simdjson::dom::parser& parser, std::string_view text)
    : source_{&parser, text, {}, SourceText::kFind} {
  Stage1 s1;
  if (!s1.bind(source_)) return;
  uint32_t items = s1.field("items");
  if (s1.at(items) == '[') first_ = items + 1;
}

SourceText ListItemSources::next() {
  Stage1 s1;
  if (!s1.bind(source_)) return SourceText{};  // no source: the pruner serializes
  uint32_t start = first_;
  first_ = SourceText::kFind;
  if (current_ != SourceText::kFind) {
    // The item before ends where its prune() said, or is walked now (it
    // was not pruned: a re-delivery, an excluded namespace, an error).
    uint32_t end = s1.at(current_end_) == '}' ? current_end_ : s1.value_end(current_);
    start = s1.at(Stage1::plus(end, 1)) == ',' ? end + 2 : SourceText::kFind;
  }
  current_ = current_end_ = SourceText::kFind;
  if (s1.at(start) != '{') return SourceText{};  // out of step, now and for the rest
  current_ = start;
  SourceText item = source_;
  item.token = start;
  item.end = &current_end_;
  return item;
}

}  // namespace kubetrail::diff
