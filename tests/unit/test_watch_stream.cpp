#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <simdjson.h>
#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "kube/recording.hpp"
#include "kube/watch_stream.hpp"

using kubetrail::kube::JsonFramer;

namespace {
struct Collected {
  std::vector<std::string> frames;
  std::vector<uint64_t> offsets;
};
JsonFramer::FrameFn collect(Collected& c) {
  return [&c](std::string_view f, uint64_t off) {
    c.frames.emplace_back(f);
    c.offsets.push_back(off);
  };
}
}  // namespace

TEST_CASE("framer splits newline-delimited events") {
  Collected c;
  JsonFramer f;
  std::string s = "{\"type\":\"ADDED\",\"object\":{}}\n{\"type\":\"DELETED\",\"object\":{\"a\":\"}\"}}\n";
  REQUIRE(f.feed(s, collect(c)).ok());
  REQUIRE(f.finish().ok());
  REQUIRE(c.frames.size() == 2);
  CHECK(c.frames[1] == "{\"type\":\"DELETED\",\"object\":{\"a\":\"}\"}}");
  CHECK(c.offsets[0] == 0);
  CHECK(c.offsets[1] == s.find("{\"type\":\"DELETED"));
}

TEST_CASE("framer handles pretty-printed events back to back and braces in strings") {
  Collected c;
  JsonFramer f;
  std::string s =
      "{\n  \"type\": \"ADDED\",\n  \"object\": {\"s\": \"a \\\"}{\\\" b\"}\n}\n{\n \"type\": \"MODIFIED\", "
      "\"object\": {}\n}";
  REQUIRE(f.feed(s, collect(c)).ok());
  REQUIRE(f.finish().ok());
  REQUIRE(c.frames.size() == 2);
  CHECK(c.frames[0].find("a \\\"}{\\\" b") != std::string::npos);
}

TEST_CASE("framer reassembles events split across chunks of any size") {
  std::string s;
  for (int i = 0; i < 20; ++i)
    s += "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"n" + std::to_string(i) + "\"}}}\n";
  for (size_t chunk : {1u, 2u, 7u, 64u, 1000u}) {
    Collected c;
    JsonFramer f;
    for (size_t i = 0; i < s.size(); i += chunk) REQUIRE(f.feed(std::string_view(s).substr(i, chunk), collect(c)).ok());
    REQUIRE(f.finish().ok());
    REQUIRE(c.frames.size() == 20);
    CHECK(c.frames[13] == "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"n13\"}}}");
    CHECK(f.pending_bytes() == 0);
  }
}

TEST_CASE("framer leaves readable bytes after every frame: in the bytes fed, else in a copy of its own") {
  // The informer parses each frame where it lies, and simdjson reads up to
  // 64 bytes past the end. A frame with fewer bytes after it in the chunk
  // must come from the framer's own buffer instead. Fails if the framer
  // hands on a view too near the end of what it was fed (checked here), or
  // its copy lacks the room (the sanitizer build reads it).
  std::string s;
  for (int i = 0; i < 40; ++i)
    s += "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"n" + std::to_string(i) + "\"}}}\n";
  for (size_t chunk : {size_t{1}, size_t{50}, size_t{64}, size_t{100}, size_t{1000}, s.size()}) {
    JsonFramer f;
    size_t frames = 0, in_place = 0;
    for (size_t at = 0; at < s.size(); at += chunk) {
      const size_t n = std::min(chunk, s.size() - at);
      auto exact = std::make_unique<char[]>(n);  // no byte past the chunk is the caller's to read
      std::memcpy(exact.get(), s.data() + at, n);
      const char* const begin = exact.get();
      const char* const end = begin + n;
      REQUIRE(f.feed(std::string_view(begin, n), [&](std::string_view frame, uint64_t) {
                 ++frames;
                 if (frame.data() >= begin && frame.data() < end) {
                   ++in_place;
                   const auto room = static_cast<size_t>(end - (frame.data() + frame.size()));
                   CHECK(room >= JsonFramer::kReadablePast);
                   if (room < JsonFramer::kReadablePast) return;
                 }
                 volatile unsigned sum = 0;  // what the parser may read: ASan fails the test if it is not there
                 for (size_t i = 0; i < JsonFramer::kReadablePast; ++i)
                   sum = sum + static_cast<unsigned char>(frame.data()[frame.size() + i]);
               }).ok());
    }
    CHECK(frames == 40);
    // Whole events with room after them are not copied.
    if (chunk >= 1000) CHECK(in_place > 0);
  }
  // Bytes the caller says are readable past the end count: a recording,
  // fed whole from a padded buffer, keeps every frame as a view into it.
  auto padded = std::make_unique<char[]>(s.size() + JsonFramer::kReadablePast);
  std::memcpy(padded.get(), s.data(), s.size());
  JsonFramer f;
  size_t in_buffer = 0;
  REQUIRE(f.feed(
               std::string_view(padded.get(), s.size()),
               [&](std::string_view frame, uint64_t) {
                 in_buffer += frame.data() >= padded.get() && frame.data() < padded.get() + s.size();
               },
               JsonFramer::kReadablePast)
              .ok());
  CHECK(in_buffer == 40);
}

TEST_CASE("framer names the byte offset of garbage between events") {
  Collected c;
  JsonFramer f;
  auto r = f.feed("{\"a\":1}\n  x{}", collect(c));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("byte offset 10") != std::string::npos);
  CHECK(c.frames.size() == 1);  // what came before is delivered
}

TEST_CASE("framer reports a truncated final event with its start offset") {
  Collected c;
  JsonFramer f;
  REQUIRE(f.feed("{\"a\":1}\n{\"b\":", collect(c)).ok());
  auto r = f.finish();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("starting at byte offset 8") != std::string::npos);
  CHECK(c.frames.size() == 1);
}

TEST_CASE("recording keeps events before a malformed one and names file and offset") {
  test::TempDir dir;
  std::string good = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}\n";
  std::string bad = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\": nope}}}\n";
  test::write_file(dir / "r.json", good + good + bad + good);
  auto rec = kubetrail::kube::Recording::load({dir / "r.json"});
  CHECK(rec.events().size() == 2);
  REQUIRE(rec.errors().size() == 1);
  CHECK(rec.errors()[0].find("r.json: byte offset " + std::to_string(2 * good.size())) != std::string::npos);
}

TEST_CASE("recording merges files in resourceVersion order") {
  test::TempDir dir;
  auto ev = [](const char* name, int rv) {
    return std::string("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"") + name +
           "\",\"resourceVersion\":\"" + std::to_string(rv) + "\"}}}\n";
  };
  test::write_file(dir / "a.json", ev("a1", 5) + ev("a2", 9));
  test::write_file(dir / "b.json", ev("b1", 3) + ev("b2", 7));
  auto rec = kubetrail::kube::Recording::load({dir / "a.json", dir / "b.json"});
  REQUIRE(rec.events().size() == 4);
  std::vector<std::string> order;
  for (const auto& e : rec.events()) order.push_back(std::string(e.frame.substr(e.frame.find("name") + 7, 2)));
  CHECK(order == std::vector<std::string>{"b1", "a1", "b2", "a2"});
}

TEST_CASE("recording of a missing file is an error naming it") {
  CHECK_THROWS_WITH_AS(kubetrail::kube::Recording::load({"/nonexistent/x.json"}),
                       doctest::Contains("/nonexistent/x.json"), kubetrail::Error);
}

// Issue 13, item 7: the framer held back bytes without a cap, so a response
// that opened '{' and never closed it grew until the watch timed out.
TEST_CASE("framer refuses a frame larger than its cap, naming where it began, and holds no more than the cap") {
  kubetrail::kube::JsonFramer framer(1000);
  std::vector<std::string> frames;
  auto on = [&](std::string_view f, uint64_t) { frames.emplace_back(f); };
  REQUIRE(framer.feed(R"({"type":"ADDED","object":{}})"
                      "\n",
                      on));
  std::string open = R"({"type":"ADDED","object":{"data":")";
  REQUIRE(framer.feed(open, on));
  bool failed = false;
  for (int i = 0; i < 100 && !failed; ++i) {
    auto r = framer.feed(std::string(100, 'x'), on);
    if (!r) {
      failed = true;
      CHECK(r.error().find("byte offset 29 ") != std::string::npos);
      CHECK(r.error().find("exceeds 1000 bytes") != std::string::npos);
    }
    CHECK(framer.pending_bytes() <= 1000);
  }
  CHECK(failed);
  CHECK(frames.size() == 1);
  // One chunk holding a whole frame over the cap is refused as well.
  kubetrail::kube::JsonFramer small(10);
  CHECK_FALSE(small.feed(R"({"type":"ADDED","object":{"a":1}})", on));
}

namespace {
// Frames (or the error) of `s` fed in pieces of `chunk` bytes (0: whole).
struct Framed {
  std::vector<std::string> frames;
  std::vector<uint64_t> offsets;
  std::string error;
  bool operator==(const Framed&) const = default;
};
// `lines`: with offer_lines(), taking each line that parses as one JSON
// value (as the informer does), counted in *lines; its frames are recorded
// with the others, in stream order.
Framed frame_in_pieces(std::string_view s, size_t chunk, size_t max_frame = JsonFramer::kDefaultMaxFrame,
                       size_t* lines = nullptr) {
  Framed out;
  JsonFramer f(max_frame);
  auto on = [&](std::string_view frame, uint64_t off) {
    out.frames.emplace_back(frame);
    out.offsets.push_back(off);
  };
  simdjson::dom::parser parser;
  if (lines) {
    *lines = 0;
    f.offer_lines([&](std::string_view line, uint64_t off) {
      simdjson::dom::element doc;
      if (parser.parse(std::string(line)).get(doc) != simdjson::SUCCESS) return false;
      ++*lines;
      on(line, off);
      return true;
    });
  }
  if (chunk == 0) chunk = s.size() + 1;
  for (size_t at = 0; at < s.size(); at += chunk) {
    auto r = f.feed(s.substr(at, chunk), on);
    if (!r) {
      out.error = r.error();
      return out;
    }
  }
  auto r = f.finish(on);
  if (!r) out.error = r.error();
  return out;
}

// Sometimes garbage in a stream, sometimes the stream cut short.
void spoil(std::string& s, std::mt19937& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  if (pick(8) == 0) s.insert(static_cast<size_t>(pick(static_cast<int>(s.size()))), "x");
  if (pick(8) == 0) s.resize(static_cast<size_t>(pick(static_cast<int>(s.size()))));
}

// Under a cap the error says how much was held "so far", which depends on
// the pieces; the frames and where the refused one began do not.
bool same_under_cap(const Framed& a, const Framed& b) {
  return a.frames == b.frames && a.offsets == b.offsets &&
         a.error.substr(0, a.error.find(" (")) == b.error.substr(0, b.error.find(" ("));
}

// A stream of events whose strings are long (so that 64-byte blocks fall
// inside them), hold brackets, quotes and runs of backslashes, and whose
// escapes fall on every side of a block boundary; sometimes with garbage.
std::string random_stream(std::mt19937& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::string s;
  int events = 1 + pick(6);
  for (int e = 0; e < events; ++e) {
    s += pick(2) ? "{\"type\":\"MODIFIED\",\"object\":{" : "{\n  \"object\": [";
    int depth = 1;
    for (int k = 0; k < 30 + pick(60); ++k) {
      switch (pick(6)) {
        case 0: {
          s += '"';
          int len = pick(150);
          for (int j = 0; j < len; ++j) {
            static const char kInString[] = "ab{}[]: ,\"\\x";
            char c = kInString[pick(sizeof kInString - 1)];
            if (c == '\\' || c == '"') s += '\\';  // an escape (\\ or \")
            s += c;
          }
          s += "\":1,";
          break;
        }
        case 1:
          s += pick(2) ? "{" : "[";
          ++depth;
          break;
        case 2:
          if (depth > 1) {
            s += pick(2) ? "}" : "]";
            --depth;
          }
          break;
        case 3:
          s += std::string(static_cast<size_t>(pick(70)), ' ');
          // Not JSON, but bytes a stream may hold: a backslash outside any
          // string, which the byte path ignores and the fast path must not
          // take for an escape (sometimes before a quote or a backslash).
          if (pick(6) == 0) s += pick(2) ? "\\\"" : (pick(2) ? "\\\\" : "\\");
          break;
        default: s += "\"k\":\"v\",";
      }
    }
    while (depth-- > 0) s += pick(2) ? "}" : "]";
    s += pick(2) ? "\n" : "  \n\t";
  }
  spoil(s, rng);
  return s;
}
}  // namespace

// The framer's fast path (64-byte blocks, strings by a prefix XOR of their
// quotes) must give exactly what the byte-by-byte path gives, which is what
// a stream fed one byte at a time takes throughout.
TEST_CASE("framer gives the same frames, offsets and errors however the stream is cut") {
  std::mt19937 rng(15);
  for (int round = 0; round < 400; ++round) {
    std::string s = random_stream(rng);
    CAPTURE(round);
    CAPTURE(s);
    Framed exact = frame_in_pieces(s, 1);
    CHECK(frame_in_pieces(s, 0) == exact);
    CHECK(frame_in_pieces(s, 1 + rng() % 200) == exact);
    CHECK(same_under_cap(frame_in_pieces(s, 1 + rng() % 200, 900), frame_in_pieces(s, 1, 900)));
  }
}

// Every managedFields key of a Kubernetes object is escaped JSON
// (`k:{\"name\":\"web\"}`), as is every last-applied-configuration
// annotation: blocks with a backslash in them are most blocks of a real
// object, and take the fast path as well. Here every 64-byte block holds
// escapes, one of them split across blocks at every offset.
TEST_CASE("framer frames objects full of escapes the same through the fast path and byte by byte") {
  std::string ev = R"({"type":"MODIFIED","object":{"metadata":{"managedFields":[{"fieldsV1":{)";
  for (int i = 0; i < 40; ++i)
    ev += std::string(i ? "," : "") + R"("k:{\"name\":\"c)" + std::to_string(i) + R"(\"}":{"f:x":{}},"p\\)" +
          std::string(static_cast<size_t>(i % 5), '\\') + std::string(static_cast<size_t>(i % 5), '\\') + R"(":[{}])";
  ev += "}}]}}}";
  for (size_t shift = 0; shift < 64; ++shift) {
    CAPTURE(shift);
    const std::string s = std::string(shift, ' ') + ev + "\n" + ev + "\n";
    Framed exact = frame_in_pieces(s, 1);
    REQUIRE(exact.error.empty());
    REQUIRE(exact.frames.size() == 2);
    CHECK(exact.frames[0] == ev);
    CHECK(frame_in_pieces(s, 0) == exact);
    CHECK(frame_in_pieces(s, 64 + shift) == exact);
  }
}

TEST_CASE("framer finds the end of an event past long strings with brackets and escaped quotes") {
  std::string inner(200, '}');
  for (size_t i = 0; i < inner.size(); i += 13) inner[i] = '"';  // each one escaped below
  std::string escaped;
  for (char c : inner) escaped += c == '"' ? std::string("\\\"") : std::string(1, c);
  std::string ev = "{\"object\":{\"a\":\"" + escaped + "\",\"b\":\"" + std::string(300, '{') + "\"}}";
  Framed got = frame_in_pieces(ev + "\n" + ev + "\n", 0);
  REQUIRE(got.error.empty());
  REQUIRE(got.frames.size() == 2);
  CHECK(got.frames[0] == ev);
  CHECK(got.offsets[1] == ev.size() + 1);
}

namespace {
// A stream of watch events that are JSON (strings with escapes, brackets,
// newlines and non-ASCII, nested objects and lists), each written one of
// the ways a stream may hold it: a compact line (kube-apiserver), with
// "\r\n" or spaces before the newline, pretty-printed (kubectl before
// 1.28), several on one line, or split by a newline inside it; sometimes with
// garbage, sometimes cut short.
std::string json_event_stream(std::mt19937& rng, size_t& compact_lines) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto value = [&](auto& self, int depth) -> nlohmann::json {
    switch (depth > 3 ? pick(3) : pick(5)) {
      case 0: {
        static const char* const kParts[] = {"a", "}", "{", "\"", "\\", "\n", "[", "]", ":", ",", " ", "caf\u00e9"};
        std::string text;
        for (int i = pick(12); i > 0; --i) text += kParts[pick(12)];
        return text;
      }
      case 1: return pick(1000) - 500;
      case 2: return pick(2) == 0;
      case 3: {
        nlohmann::json o = nlohmann::json::object();
        for (int i = pick(5); i > 0; --i)
          o["k" + std::to_string(pick(9)) + (pick(4) ? "" : "}\"")] = self(self, depth + 1);
        return o;
      }
      default: {
        nlohmann::json a = nlohmann::json::array();
        for (int i = pick(5); i > 0; --i) a.push_back(self(self, depth + 1));
        return a;
      }
    }
  };
  compact_lines = 0;
  std::string s;
  for (int e = 1 + pick(8); e > 0; --e) {
    nlohmann::json ev = {{"type", "MODIFIED"}, {"object", {{"spec", value(value, 0)}}}};
    switch (pick(6)) {
      case 0: s += ev.dump(2) + "\n"; break;
      case 1: s += ev.dump() + " \r\n"; break;
      case 2:  // two to four on one line
        for (int k = 2 + pick(3); k > 0; --k) s += ev.dump();
        s += "\n";
        break;
      case 3: {
        std::string text = ev.dump();
        text.insert(text.find(',') + 1, "\n");  // between two members: still JSON, not a line
        s += text + "\n";
        break;
      }
      default: s += ev.dump() + "\n"; ++compact_lines;
    }
  }
  spoil(s, rng);
  return s;
}
}  // namespace

// offer_lines() lets the parser frame kube-apiserver's one-line events, and
// what it refuses is framed exactly: the frames, their offsets and any
// error must be what the exact scan alone gives, however the stream is cut.
TEST_CASE("framer offering lines gives the frames, offsets and errors of the exact scan") {
  std::mt19937 rng(16);
  size_t taken_in_all = 0, compact_in_all = 0;
  for (int round = 0; round < 600; ++round) {
    size_t compact = 0, taken = 0;
    const std::string s = json_event_stream(rng, compact);
    CAPTURE(round);
    CAPTURE(s);
    const Framed exact = frame_in_pieces(s, 1);
    CHECK(frame_in_pieces(s, 0, JsonFramer::kDefaultMaxFrame, &taken) == exact);
    taken_in_all += taken;
    compact_in_all += compact;
    for (size_t chunk : {size_t{1}, size_t{1} + rng() % 40, size_t{1} + rng() % 400})
      CHECK(frame_in_pieces(s, chunk, JsonFramer::kDefaultMaxFrame, &taken) == exact);
    CHECK(same_under_cap(frame_in_pieces(s, 1 + rng() % 100, 300, &taken), frame_in_pieces(s, 1, 300)));
  }
  // The lines are taken (not scanned and handed to on_frame): nearly every
  // compact line is, the rest being those garbage or a cut reached.
  CHECK(taken_in_all > compact_in_all * 9 / 10);
}

TEST_CASE("framer offering lines takes every compact line, in any chunks, and none of a pretty-printed stream") {
  std::string compact, pretty;
  for (int i = 0; i < 30; ++i) {
    nlohmann::json ev = {{"type", "MODIFIED"},
                         {"object", {{"metadata", {{"name", "n" + std::to_string(i)}}}, {"data", {{"k", "}\"{"}}}}}};
    compact += ev.dump() + "\n";
    pretty += ev.dump(2) + "\n";
  }
  for (size_t chunk : {0u, 1u, 7u, 64u, 100u, 1000u}) {
    CAPTURE(chunk);
    size_t taken = 0;
    Framed got = frame_in_pieces(compact, chunk, JsonFramer::kDefaultMaxFrame, &taken);
    CHECK(got == frame_in_pieces(compact, 1));
    CHECK(got.frames.size() == 30);
    CHECK(taken == 30);
    got = frame_in_pieces(pretty, chunk, JsonFramer::kDefaultMaxFrame, &taken);
    CHECK(got == frame_in_pieces(pretty, 1));
    CHECK(got.frames.size() == 30);
    CHECK(taken == 0);  // each first line is "{": refused at a glance, framed exactly
  }
}

// Events back to back with no newline between (not what kube-apiserver
// writes, but bytes a stream may hold): every one of them is a frame, as
// the exact scan finds. (Failed before: the bytes held for a line were
// framed again one frame at a time, each time holding the rest unscanned
// again, so finish() gave the first frame and called the rest truncated,
// and a stream past the cap copied everything held once per frame.)
TEST_CASE("framer offering lines frames events back to back without newlines, each once") {
  std::string s;
  for (int i = 0; i < 50000; ++i) s += i % 3 ? "{}" : R"({"a":[1,{"b":"}"}]})";
  size_t taken = 0;
  const Framed exact = frame_in_pieces(s, 0);
  REQUIRE(exact.frames.size() == 50000);
  CHECK(frame_in_pieces(s, 0, JsonFramer::kDefaultMaxFrame, &taken) == exact);
  CHECK(frame_in_pieces(s, 4096, JsonFramer::kDefaultMaxFrame, &taken) == exact);
  CHECK(taken == 0);
  // Past the cap, the bytes held are framed exactly once, and from then on
  // the stream is scanned as it comes: only an event's start is held.
  JsonFramer f(64 << 10);
  size_t frames = 0, fed = 0;
  f.offer_lines([](std::string_view, uint64_t) { return true; });
  for (size_t at = 0; at < s.size(); at += 4096) {
    REQUIRE(f.feed(std::string_view(s).substr(at, 4096), [&](std::string_view, uint64_t) { ++frames; }).ok());
    fed += std::min<size_t>(4096, s.size() - at);
    if (fed > (128 << 10)) CHECK(f.pending_bytes() < 32);
  }
  CHECK(f.finish().ok());
  CHECK(frames == 50000);
}
