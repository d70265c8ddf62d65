#include "kube/recording.hpp"

#include <algorithm>
#include <charconv>

#include "common/deep_json.hpp"
#include "common/error.hpp"
#include "common/json_depth.hpp"

namespace kubetrail::kube {

namespace {
struct Sortable {
  RecordedEvent event;
  uint64_t rv = 0;
  bool numeric = false;
};
}  // namespace

Recording Recording::load(const std::vector<std::filesystem::path>& files) {
  Recording rec;
  std::vector<Sortable> all;
  simdjson::dom::parser parser;
  std::unique_ptr<simdjson::dom::parser> deep_parser;  // made at the first event too deep for `parser`
  for (size_t f = 0; f < files.size(); ++f) {
    simdjson::padded_string buf;
    if (auto err = simdjson::padded_string::load(files[f].string()).get(buf))
      throw Error("cannot read recording " + files[f].string() + ": " + simdjson::error_message(err));
    rec.files_.push_back(files[f].string());
    const std::string& name = rec.files_.back();
    JsonFramer framer;
    bool failed = false;
    auto on_frame = [&](std::string_view frame, uint64_t offset) {
      if (failed) return;
      auto fail = [&](const std::string& why) {
        rec.errors_.push_back(name + ": byte offset " + std::to_string(offset) + ": " + why);
        failed = true;
      };
      simdjson::dom::element doc;
      // The file is fed whole, with its padding: every frame is a view into
      // the padded buffer (kept below), parsed in place, no copy.
      bool deep = false;
      if (auto err = parser.parse(frame.data(), frame.size(), false).get(doc)) {
        if (err != simdjson::DEPTH_ERROR)
          return fail(std::string("invalid JSON in the event starting here: ") + simdjson::error_message(err));
        // Valid JSON a server may send (it allows 10,000 levels): as the
        // informer does, a deletion is kept (replay reports it from the
        // last version read) and any other such event is left out; the
        // rest of the file is read.
        const DeepParse again = parse_allowing_deep(
            parser, deep_parser,
            simdjson::padded_string_view(frame.data(), frame.size(), frame.size() + JsonFramer::kReadablePast));
        std::string_view type_name;
        if (again.error != simdjson::SUCCESS || again.doc["type"].get(type_name) != simdjson::SUCCESS ||
            type_name != "DELETED") {
          rec.errors_.push_back(name + ": byte offset " + std::to_string(offset) + ": event " + nested_deeper_than() +
                                ", skipped");
          return;
        }
        doc = again.doc;
        deep = true;
      }
      std::string_view type_name;
      if (doc["type"].get(type_name) != simdjson::SUCCESS) return fail("event has no \"type\" string");
      auto type = model::parse_watch_event_type(type_name);
      if (!type) return fail("unknown event type \"" + std::string(type_name) + "\"");
      simdjson::dom::object object;
      if (doc["object"].get(object) != simdjson::SUCCESS) return fail("event has no \"object\"");
      Sortable s;
      s.event = RecordedEvent{*type, frame, f, offset, deep};
      std::string_view rv;
      if (object.at_pointer("/metadata/resourceVersion").get(rv) == simdjson::SUCCESS) {
        auto [p, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), s.rv);
        s.numeric = ec == std::errc() && p == rv.data() + rv.size();
      }
      all.push_back(s);
    };
    auto fed = framer.feed(std::string_view(buf.data(), buf.size()), on_frame, simdjson::SIMDJSON_PADDING);
    if (!failed) {
      if (!fed)
        rec.errors_.push_back(name + ": " + fed.error());
      else if (auto fin = framer.finish(); !fin)
        rec.errors_.push_back(name + ": " + fin.error());
    }
    rec.buffers_.push_back(std::move(buf));  // moving keeps the heap buffer: frames stay valid
  }
  bool numeric = std::all_of(all.begin(), all.end(), [](const Sortable& s) { return s.numeric; });
  if (numeric && files.size() > 1)
    std::stable_sort(all.begin(), all.end(), [](const Sortable& a, const Sortable& b) { return a.rv < b.rv; });
  rec.events_.reserve(all.size());
  for (auto& s : all) rec.events_.push_back(s.event);
  return rec;
}

}  // namespace kubetrail::kube
