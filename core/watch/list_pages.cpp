#include "watch/list_pages.hpp"

#include <set>

#include "common/deep_json.hpp"
#include "common/go_slice.hpp"
#include "kube/discovery.hpp"
#include "watch/request.hpp"

namespace kubetrail::watch {

namespace dom = simdjson::dom;

ListEnd read_list(kube::Api& api, const std::string& base, const std::atomic<bool>& stop,
                  std::unique_ptr<dom::parser>& deep_parser, const std::function<bool(int64_t)>& expired,
                  const std::function<void(ListPage&)>& page) {
  dom::parser parser;
  std::string page_memory, cont;  // the last page's body, its memory reused for the next page (see Api::get)
  // The tokens of this pass: one given again would send the list round
  // the same pages for ever (a broken server or proxy), never complete.
  std::set<std::string> tokens;
  // Not do/while: the `continue` that starts an expired list over must come
  // back to the top, not to a test of the token it has just cleared.
  for (;;) {
    if (stop.load()) return {ListEnd::How::stopped, {}, 0};
    auto r = api.get(base + (cont.empty() ? "" : "&continue=" + url_escape(cont)), 60000, {}, &page_memory);
    if (r.status == 410 && !cont.empty()) {
      if (!expired(r.retry_after_ms))
        return {ListEnd::How::failed, "the continue token expired, again", r.retry_after_ms};
      cont.clear();
      tokens.clear();
      continue;
    }
    if (r.status != 200) return {ListEnd::How::failed, kube::describe_failure(r), r.retry_after_ms};
    // In place: the client leaves simdjson's padding after the body (a
    // body without it, as the fuzzer's and the tests' are, is copied).
    const DeepParse parsed = parse_allowing_deep(parser, deep_parser, r.body);
    if (parsed.error != simdjson::SUCCESS)
      return {ListEnd::How::failed, std::string("the answer is not JSON: ") + simdjson::error_message(parsed.error), 0};
    if (parsed.doc.type() != dom::element_type::OBJECT)
      return {ListEnd::How::failed, "the answer is not a list (not a JSON object)", 0};
    std::optional<dom::array> items;
    if (!slice_field(parsed.doc, "items", items))
      return {ListEnd::How::failed, "the answer is not a list (no \"items\" array)", 0};
    std::string_view v;
    cont = parsed.doc.at_pointer("/metadata/continue").get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
    if (!cont.empty() && !tokens.insert(cont).second)
      return {ListEnd::How::failed,
              "the server gave continue token a second time in one list (it would go round for ever)", 0};
    diff::ListItemSources items_text(*parsed.parser, r.body);  // lets the pruner copy untouched subtrees
    ListPage listed{parsed.doc, items, items_text, parsed.deep, r.body.size(), cont.empty()};
    page(listed);
    page_memory = std::move(r.body);
    if (cont.empty()) return {};
  }
}

}  // namespace kubetrail::watch
