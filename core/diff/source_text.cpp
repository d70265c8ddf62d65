#include "diff/source_text.hpp"

#include "diff/stage1.hpp"

namespace kubetrail::diff {

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

}  // namespace kubetrail::diff
