// The informer's cache (model/object_store.hpp): once it holds kPackAfter
// objects it keeps each as a zstd frame against a dictionary of its first
// objects. What it hands back must be exactly what it was given, whatever
// it stores; same_text() must tell a changed object from an unchanged one
// without decompressing; and a cache that packs must make exactly the change
// sets one that does not makes (issue 15, item 4).
#include <doctest/doctest.h>
#include <simdjson.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "diff/diff.hpp"
#include "helpers.hpp"
#include "model/object_store.hpp"

using namespace kubetrail;
using nlohmann::json;

namespace {
json pod(int i) {
  json p = json::parse(test::read_file(test::source_dir() / "tests/fixtures/pod.json"));
  p["metadata"]["name"] = "web-" + std::to_string(i);
  p["metadata"]["uid"] = "uid-" + std::to_string(i);
  p["metadata"]["resourceVersion"] = std::to_string(100 + i);
  return p;
}
model::StoredObject stored(std::string text) {
  model::StoredObject o;
  o.json = std::move(text);
  return o;
}
// 200 pods put by `put`: each reads back exactly, packed, and the frames
// take a fraction of the texts' bytes - in memory, not only in size.
template <class Put>
void check_packing(Put put) {
  model::ObjectStore store;
  std::vector<std::string> texts;
  size_t raw = 0;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(pod(i).dump());
    raw += texts.back().size();
    put(store, "ns/web-" + std::to_string(i), texts.back());
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    const model::StoredObject* o = store.find("ns/web-" + std::to_string(i));
    REQUIRE(o);
    CHECK(o->packed);
    CHECK(store.text(*o) == texts[i]);
    CHECK(store.same_text(*o, texts[i]));
  }
  CHECK(store.text_bytes() * 5 < raw);
  MESSAGE("200 pods: " << raw << " bytes of text held in " << store.text_bytes());
}
}  // namespace

TEST_CASE("object store: packed texts read back exactly, and take a fraction of the bytes") {
  // Pods repeat each other: the frames are far smaller than the texts (the
  // memory check failed before: a frame assigned into the text's string
  // kept the text's capacity, and RSS did not move).
  check_packing([](model::ObjectStore& store, std::string key, const std::string& text) {
    store.put(std::move(key), stored(text));
  });
}

TEST_CASE("object store: put from a view stores that text, before and after packing starts, in frame-sized memory") {
  // The informer's list puts each object from the pruner's buffer (a view)
  // rather than from a copy of it (issue 15, item 3). Whatever json the
  // object came with is replaced by the view's text.
  check_packing([](model::ObjectStore& store, std::string key, const std::string& text) {
    std::string buffer = text;  // stands for the pruner's reused buffer
    store.put(std::move(key), stored("stale text"), buffer);
    buffer.assign(buffer.size(), 'x');  // the view's memory is reused for the next object
  });
}

TEST_CASE("object store: same_text tells one changed byte from none, set_text replaces, small stores do not pack") {
  model::ObjectStore store;
  for (int i = 0; i < 3; ++i) store.put("ns/web-" + std::to_string(i), stored(pod(i).dump()));
  CHECK_FALSE(store.find("ns/web-0")->packed);  // fewer than kPackAfter: kept as text
  for (int i = 3; i < 40; ++i) store.put("ns/web-" + std::to_string(i), stored(pod(i).dump()));
  model::StoredObject* o = store.find_mutable("ns/web-7");
  REQUIRE(o->packed);  // packing began: the objects already there were packed too
  std::string text = pod(7).dump(), same_size = text;
  auto at = same_size.find("web-7");
  same_size[at + 4] = '8';  // "web-8": one byte, same length
  CHECK(store.same_text(*o, text));
  CHECK_FALSE(store.same_text(*o, same_size));
  CHECK_FALSE(store.same_text(*o, text + " "));
  store.set_text(*o, same_size);
  CHECK(store.text(*o) == same_size);
  CHECK(store.same_text(*o, same_size));
  // A text that does not compress is kept as it is, and reads back.
  std::mt19937 rng(7);
  std::string noise;
  for (int i = 0; i < 4000; ++i) noise.push_back(static_cast<char>('a' + rng() % 26));
  std::string odd = json{{"data", {{"blob", noise}}}}.dump();
  store.set_text(*o, odd);
  CHECK(store.text(*o) == odd);
  CHECK(store.same_text(*o, odd));
}

TEST_CASE("object store: set_text with the digest same_text computed stores that text") {
  // The detector hands set_text() the digest same_text() computed of the
  // same pruned text, so an event that changes an object hashes it once.
  // Fails if same_text() gives back a digest that is not the text's, or
  // set_text() stores another than the one it is given.
  model::ObjectStore store;
  for (int i = 0; i < 40; ++i) store.put("ns/web-" + std::to_string(i), stored(pod(i).dump()));
  model::StoredObject* o = store.find_mutable("ns/web-7");
  REQUIRE(o->packed);
  std::string changed = pod(7).dump();
  changed[changed.find("web-7") + 4] = '9';  // same length: same_text() hashes it
  std::optional<model::ObjectStore::TextDigest> digest;
  CHECK_FALSE(store.same_text(*o, changed, &digest));
  REQUIRE(digest);
  CHECK(digest->size == changed.size());
  store.set_text(*o, changed, digest);
  CHECK(store.text(*o) == changed);
  CHECK(store.same_text(*o, changed));
  CHECK_FALSE(store.same_text(*o, pod(7).dump()));
  // A text of another size is told apart by its size alone: no digest.
  std::optional<model::ObjectStore::TextDigest> none;
  CHECK_FALSE(store.same_text(*o, changed + " ", &none));
  CHECK_FALSE(none);
}

// A differential test: the same events through a cache that packs (40 other
// pods in it) and one that does not (the pod alone) make identical change
// sets - changes, summary, actor, and the old and new objects.
TEST_CASE("object store: a cache that packs makes exactly the change sets of one that does not") {
  model::DiffOptions opts;
  opts.redaction_key = "k";
  opts.include_objects = true;
  diff::ChangeDetector packing("test", opts), plain("test", opts);
  model::ObjectStore big, small;
  simdjson::dom::parser parser;
  auto type = model::resource_type_for("v1", "Pod");
  auto feed = [&](diff::ChangeDetector& d, model::ObjectStore& s, model::WatchEventType t, const json& obj) {
    std::string text = obj.dump();
    diff::SourceText source{&parser, text, {}};
    auto r = d.observe(t, type, parser.parse(text).value(), s, "2026-12-04T10:00:00.000Z", &source);
    REQUIRE(r.ok());
    return std::move(r).value();
  };
  for (int i = 0; i < 40; ++i) feed(packing, big, model::WatchEventType::added, pod(i));
  json p = pod(3);
  feed(plain, small, model::WatchEventType::added, p);
  REQUIRE(big.find("shop/web-3"));
  CHECK(big.find("shop/web-3")->packed);
  CHECK_FALSE(small.find("shop/web-3")->packed);
  int rv = 1000;
  auto step = [&](const char* what, auto&& edit) {
    CAPTURE(what);
    edit(p);
    p["metadata"]["resourceVersion"] = std::to_string(++rv);
    auto a = feed(packing, big, model::WatchEventType::modified, p);
    auto b = feed(plain, small, model::WatchEventType::modified, p);
    REQUIRE(a.has_value() == b.has_value());
    if (a) CHECK(a->to_json() == b->to_json());
    return a.has_value();
  };
  CHECK(step("image", [](json& o) { o["spec"]["containers"][0]["image"] = "nginx:9"; }));
  CHECK_FALSE(step("resourceVersion only", [](json&) {}));
  CHECK(step("label", [](json& o) { o["metadata"]["labels"]["tier"] = "gold"; }));
  CHECK_FALSE(step("status only", [](json& o) { o["status"]["phase"] = "Running"; }));
  CHECK(step("label removed", [](json& o) { o["metadata"]["labels"].erase("tier"); }));
  auto a = feed(packing, big, model::WatchEventType::deleted, p);
  auto b = feed(plain, small, model::WatchEventType::deleted, p);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->to_json() == b->to_json());
}

// The store remembers its last lookup (an event's uid check and its diff
// find the same object in turn); what it remembers must never outlive the
// element or move with the elements to another store.
TEST_CASE("object store: the remembered lookup forgets an erased object and stays with a moved store") {
  model::ObjectStore a;
  model::StoredObject o;
  o.uid = "u1";
  a.put("ns/x", o, R"({"a":1})");
  REQUIRE(a.find("ns/x"));
  CHECK(a.find("ns/x")->uid == "u1");
  a.erase("ns/x");
  CHECK(a.find("ns/x") == nullptr);
  a.put("ns/x", o, R"({"a":1})");
  REQUIRE(a.find("ns/x"));
  model::ObjectStore b(std::move(a));
  CHECK(b.find("ns/x"));
  a = model::ObjectStore();
  CHECK(a.find("ns/x") == nullptr);
  model::ObjectStore c;
  c = std::move(b);
  CHECK(c.find("ns/x")->uid == "u1");
  c.find_mutable("ns/x")->uid = "u2";
  CHECK(c.find("ns/x")->uid == "u2");
  CHECK(c.find("ns/y") == nullptr);
}
