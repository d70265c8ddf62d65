// Two objects (split at the first NUL byte, or in the middle) through the
// change detector as an Added then a Modified, with the properties that
// must hold for any input:
//   - an object diffed with itself has no changes;
//   - every path in a change set parses back (PathPattern);
//   - the change set's JSON parses, and reads back;
//   - the fast path (narrowed to the changed subtree) equals the whole-object diff;
//   - a cache that packs (its frames and the managers encoded in its arena)
//     makes exactly the change sets, actor included, of one that does not;
//   - an object pruned from its source text (untouched subtrees copied byte
//     for byte) is the text pruning it without the source writes, whatever
//     its whitespace, escapes and numbers - for a prune for a diff and one
//     for a list item only stored;
//   - inside a watch event, a parse that leaves the members pruning only
//     copies out of the DOM (ChangeDetector::parse_event) accepts and
//     refuses what a plain parse does, with the same error, and prunes to
//     the same bytes; the fast detector parses that way;
// and the whole input read as a change set (the journal's, the outbox's and
// the change API's format: ChangeSet::from_json) ends as one or as a
// kubetrail::Error.
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "diff/diff.hpp"
#include "diff/pruner.hpp"
#include "fuzz.hpp"

using namespace kubetrail;
namespace dom = simdjson::dom;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}

const model::ResourceType& deployments() {
  static const model::ResourceType type = model::resource_type_for("apps/v1", "Deployment");
  return type;
}

// `object` inside a watch event, with room for simdjson's padding.
std::string event_of(std::string_view object) {
  std::string frame = R"({"type":"MODIFIED","object":)" + std::string(object) + "}";
  frame.reserve(frame.size() + simdjson::SIMDJSON_PADDING);
  return frame;
}
simdjson::padded_string_view padded(const std::string& frame) {
  return simdjson::padded_string_view(frame.data(), frame.size(), frame.capacity());
}

// The object inside a watch event, parsed as the informer parses it
// (`hollow`: members left out of the DOM) or plainly.
std::optional<model::ChangeSet> step(diff::ChangeDetector& d, model::ObjectStore& store, dom::parser& p,
                                     const std::string& text, model::WatchEventType type, bool hollow = false) {
  const std::string frame = event_of(text);
  diff::HollowParse parse;
  if (hollow)
    d.parse_event(deployments(), p, padded(frame), parse, &store);
  else
    parse.error = p.parse(padded(frame)).get(parse.doc);
  dom::element e;
  if (parse.error != simdjson::SUCCESS || parse.doc["object"].get(e) != simdjson::SUCCESS) return std::nullopt;
  diff::SourceText source = parse.source(p, frame, "object");
  const auto& type_of = deployments();
  if (auto gone = d.replaced(type_of, e, store, "2026-01-01T00:00:00.000Z")) (void)gone->to_json();
  auto r = d.observe(type, type_of, e, store, "2026-01-01T00:00:00.000Z", &source);
  if (!r) return std::nullopt;
  return std::move(r).value();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::bytes(data, size);
  try {
    (void)model::ChangeSet::from_json(in);
  } catch (const Error&) {
  }
  size_t cut = in.find('\0');
  if (cut == std::string_view::npos) cut = in.size() / 2;
  std::string a(in.substr(0, cut)), b(in.substr(std::min(in.size(), cut + 1)));

  // diff(x, x) is empty.
  {
    dom::parser p1, p2;
    dom::element x1, x2;
    if (p1.parse(a).get(x1) == simdjson::SUCCESS && p2.parse(a).get(x2) == simdjson::SUCCESS) {
      diff::DocumentDiffer differ;
      std::vector<model::FieldChange> out;
      differ.diff(x1, x2, out);
      check(out.empty());
    }
  }
  // Pruned from the source text (recording containers or not) or
  // serialized: the same bytes.
  for (const std::string* text : {&a, &b}) {
    dom::parser p;
    dom::element e;
    if (p.parse(*text).get(e) != simdjson::SUCCESS) continue;
    diff::ListKeys keys;
    const std::string redaction_key = "fuzz";
    diff::Pruner pruner(keys, redaction_key);
    pruner.identify("Deployment", "apps/v1");
    pruner.add("metadata.managedFields", diff::Pruner::Action::drop);
    pruner.add("spec.template.spec.containers[*].env", diff::Pruner::Action::drop);
    pruner.add("data.*", diff::Pruner::Action::redact);
    const std::string serialized(pruner.prune(e));
    diff::SourceText source{&p, *text, {}};
    check(pruner.prune(e, &source, true) == serialized);
    check(pruner.prune(e, &source, false) == serialized);
  }
  // A parse leaving members out of the DOM: the plain parse's verdict and
  // error, and the same pruned bytes. Given a cache holding `a`'s object,
  // whose members copied as they were need no walk when their bytes come
  // again: the same parse.
  model::DiffOptions seen_options;
  seen_options.redaction_key = "fuzz";
  diff::ChangeDetector seer("fuzz", seen_options);
  model::ObjectStore seen;
  {
    dom::parser p;
    step(seer, seen, p, a, model::WatchEventType::added, true);
  }
  for (const std::string* text : {&a, &b}) {
    model::DiffOptions o;
    o.redaction_key = "fuzz";
    diff::ChangeDetector detector("fuzz", o);
    const std::string frame = event_of(*text);
    dom::parser plain_parser, hollow_parser;
    dom::element plain_doc;
    const auto plain_error = plain_parser.parse(padded(frame)).get(plain_doc);
    diff::HollowParse parse;
    for (int i = 0; i < 2; ++i) detector.parse_event(deployments(), hollow_parser, padded(frame), parse);  // 1st: plain
    check(parse.error == plain_error);
    // Pruned, or refused (an object too deep for the pruner).
    auto pruned = [&](dom::element object, const diff::SourceText* from) -> std::optional<std::string> {
      try {
        return detector.prune(deployments(), object, from).json;
      } catch (const Error&) {
        return std::nullopt;
      }
    };
    {
      // The 1st parse allocates; the 2nd runs stage 1 over the whole text
      // and names the member it knew; the 3rd cuts stage 1 around it. Or,
      // as after another object's label event, a cut at "spec" tried from
      // the start, whether its bytes are the cached ones or not.
      for (const bool preset : {false, true}) {
        dom::parser known_parser;
        diff::HollowParse known;
        if (preset) known.split_member = "spec";
        for (int i = 0; i < 3; ++i) {
          seer.parse_event(deployments(), known_parser, padded(frame), known, &seen);
          if (i == 0) continue;
          check(known.error == parse.error);
          if (known.error != simdjson::SUCCESS) continue;
          check(diff::stage2_view(known_parser, known) == diff::stage2_view(hollow_parser, parse));
          dom::element known_object, object;
          check(known.doc["object"].get(known_object) == simdjson::SUCCESS);
          if (parse.doc["object"].get(object) != simdjson::SUCCESS) continue;
          const diff::SourceText known_source = known.source(known_parser, frame, "object"),
                                 source = parse.source(hollow_parser, frame, "object");
          check(pruned(known_object, &known_source) == pruned(object, &source));
        }
      }
    }
    dom::element plain_object, hollow_object;
    if (plain_error != simdjson::SUCCESS || plain_doc["object"].get(plain_object) != simdjson::SUCCESS) continue;
    check(parse.doc["object"].get(hollow_object) == simdjson::SUCCESS);
    const diff::SourceText source = parse.source(hollow_parser, frame, "object");
    // Pruned alike, or refused alike.
    check(pruned(hollow_object, &source) == pruned(plain_object, nullptr));
    // And alike without the fallback that would hide a pruner lost in the
    // hollowed text (Pruner::prune() parses it again whole): it never ran.
    check(detector.reparsed() == 0);
  }
  check(seer.reparsed() == 0);
  model::DiffOptions options;
  options.redaction_key = "fuzz";  // one key: both detectors write the same markers
  diff::ChangeDetector fast("fuzz", options), whole("fuzz", options);
  whole.diff_whole_objects(true);
  diff::ChangeDetector packing("fuzz", options);
  model::ObjectStore s1, s2, s3;
  // Filled until it packs, under keys no input object has: a key is
  // namespace/name, and an object's name is never empty.
  for (size_t i = 0; i < model::ObjectStore::kPackAfter; ++i) {
    model::StoredObject filler;
    filler.json = R"({"metadata":{"name":"filler-)" + std::to_string(i) + R"("}})";
    s3.put("filler-" + std::to_string(i) + "/", std::move(filler));
  }
  dom::parser p1, p2, p3;
  auto a1 = step(fast, s1, p1, a, model::WatchEventType::added, true);
  step(whole, s2, p2, a, model::WatchEventType::added);
  auto a3 = step(packing, s3, p3, a, model::WatchEventType::added);
  check(a1.has_value() == a3.has_value());
  if (a1) check(a1->to_json() == a3->to_json());
  auto c1 = step(fast, s1, p1, b, model::WatchEventType::modified, true);
  auto c2 = step(whole, s2, p2, b, model::WatchEventType::modified);
  auto c3 = step(packing, s3, p3, b, model::WatchEventType::modified);
  check(c1.has_value() == c2.has_value());
  check(c1.has_value() == c3.has_value());
  if (c1) check(c1->to_json() == c3->to_json());
  if (c1) {
    check(c1->changes == c2->changes);
    for (const auto& c : c1->changes) {
      try {
        model::ParsedPath parsed(c.path);
        check(model::format_path(parsed.segments()) == c.path);
      } catch (const Error&) {
        check(false);  // a path kubetrail wrote that it cannot read back
      }
    }
    std::string text = c1->to_json();
    check(nlohmann::json::accept(text));
    auto back = model::ChangeSet::from_json(text);
    check(back.id == c1->id && back.changes.size() == c1->changes.size());
  }
  check(fast.reparsed() == 0 && packing.reparsed() == 0);
  return 0;
}
