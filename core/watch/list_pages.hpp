// One list of a resource read page by page (`limit` and `continue`), as an
// informer's list and an inventory snapshot both read it: one loop, so
// that what one learns about lists (an expired continue token, an object
// nested too deep, an answer that is not a list) the other knows too.
#pragma once

#include <simdjson.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "diff/source_text.hpp"
#include "kube/api.hpp"

namespace kubetrail::watch {

// A page as read: its document, its items and the source text of each.
struct ListPage {
  simdjson::dom::element doc;                 // a JSON object (metadata.resourceVersion, metadata.continue)
  std::optional<simdjson::dom::array> items;  // none: `items` is null
  diff::ListItemSources& items_text;          // each item's source text: next() once per item, in order
  bool deep = false;                          // parsed by the deep parser: an item may be too deep (too_deep())
  size_t bytes = 0;                           // the page's body
  bool last = false;                          // no continue token: the list's last page
};

struct ListEnd {
  enum class How { complete, stopped, failed } how = How::complete;
  std::string why;             // failed: what was wrong, for the log (no URL, no credential)
  int64_t retry_after_ms = 0;  // failed: the answer's Retry-After
};

// Reads the collection at `base` (collection_path() and `limit=N`), page
// after page, calling `page` for each (its views live until it returns).
// A 410 to a continue token (it expired) asks `expired` (with the answer's
// Retry-After, ms): true reads the list again from its first page (the
// caller forgets what it had of this pass), false fails it. An answer
// other than 200, one that is not JSON, and one that is not a list - not
// an object, or no `items` array (`null` is an empty list; kube-apiserver
// always writes `items`) - fail the list: read as empty, a relist would
// take every cached object for deleted. So does a continue token given
// twice in one pass (the list would go round the same pages for ever).
ListEnd read_list(kube::Api& api, const std::string& base, const std::atomic<bool>& stop,
                  std::unique_ptr<simdjson::dom::parser>& deep_parser,
                  const std::function<bool(int64_t retry_after_ms)>& expired,
                  const std::function<void(ListPage&)>& page);

}  // namespace kubetrail::watch
