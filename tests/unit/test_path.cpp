#include <doctest/doctest.h>

#include "common/error.hpp"
#include "model/path.hpp"

using kubetrail::model::ParsedPath;
using kubetrail::model::PathPattern;
using kubetrail::model::Segment;

TEST_CASE("paths format keys, indexes, keyed elements and quoted keys") {
  std::vector<Segment> p{{Segment::Kind::key, "spec", 0, {}, {}},
                         {Segment::Kind::key, "containers", 0, {}, {}},
                         {Segment::Kind::keyed, {}, 0, "name", "web"},
                         {Segment::Kind::key, "image", 0, {}, {}}};
  CHECK(kubetrail::model::format_path(p) == "spec.containers[name=web].image");
  std::vector<Segment> q{{Segment::Kind::key, "metadata", 0, {}, {}},
                         {Segment::Kind::key, "annotations", 0, {}, {}},
                         {Segment::Kind::key, "kubectl.kubernetes.io/restartedAt", 0, {}, {}}};
  CHECK(kubetrail::model::format_path(q) == "metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]");
  std::vector<Segment> r{{Segment::Kind::key, "rules", 0, {}, {}}, {Segment::Kind::index, {}, 3, {}, {}}};
  CHECK(kubetrail::model::format_path(r) == "rules[3]");
}

TEST_CASE("formatted paths parse back to the same segments") {
  for (const char* text :
       {"spec.template.spec.containers[name=web].image", "metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"]",
        "spec.rules[3].host", "spec.ports[containerPort=8080]", "[\"weird.key\"].x"}) {
    ParsedPath p(text);
    CHECK(kubetrail::model::format_path(p.segments()) == text);
  }
}

TEST_CASE("patterns with wildcards select paths, ancestors and descendants") {
  auto pat = PathPattern::parse("spec.template.spec.containers[*].image");
  CHECK(pat.overlaps(ParsedPath("spec.template.spec.containers[name=app].image").segments()));
  CHECK(pat.overlaps(ParsedPath("spec.template.spec.containers[name=app]").segments()));  // whole container
  CHECK_FALSE(pat.overlaps(ParsedPath("spec.template.spec.containers[name=app].env").segments()));
  CHECK_FALSE(pat.overlaps(ParsedPath("spec.replicas").segments()));
  CHECK(pat.covers(ParsedPath("spec.template.spec.containers[name=app].image").segments()));
  CHECK_FALSE(pat.covers(ParsedPath("spec.template.spec.containers[name=app]").segments()));

  auto keyed = PathPattern::parse("spec.containers[name=web].*");
  CHECK(keyed.overlaps(ParsedPath("spec.containers[name=web].image").segments()));
  CHECK_FALSE(keyed.overlaps(ParsedPath("spec.containers[name=db].image").segments()));
  auto any_value = PathPattern::parse("spec.containers[name=*]");
  CHECK(any_value.overlaps(ParsedPath("spec.containers[name=db]").segments()));
  CHECK_FALSE(PathPattern::parse("spec.rules[0]").overlaps(ParsedPath("spec.rules[1]").segments()));
}

TEST_CASE("bad patterns are refused with the character offset") {
  CHECK_THROWS_WITH_AS(PathPattern::parse("spec..x"), doctest::Contains("character 5"), kubetrail::Error);
  CHECK_THROWS_WITH_AS(PathPattern::parse("spec.containers[name=web"), doctest::Contains("missing ']'"),
                       kubetrail::Error);
  CHECK_THROWS_AS(PathPattern::parse(""), kubetrail::Error);
  CHECK_THROWS_AS(PathPattern::parse("a.[x]"), kubetrail::Error);
  CHECK_THROWS_AS(ParsedPath("a[*]"), kubetrail::Error);  // a concrete path has no wildcard
}

// Issue 13, item 1: keyed values were written unescaped (env[name=],
// env[name=a]b]) and PathPattern::parse could not read them back; the
// exception from find_actor/route ended the informer thread and the process.
// Before the fix the first four values below threw on parse.
TEST_CASE("every keyed value, however odd, formats to a path that parses back to it") {
  for (std::string value : {std::string(""), std::string("a]b"), std::string("*"), std::string("a\"b"),
                            std::string("a\\b"), std::string(" lead"), std::string("\"q"), std::string("a=b"),
                            std::string("x.y[0]"), std::string("]]]"), std::string("\\\""), std::string("plain")}) {
    CAPTURE(value);
    std::vector<Segment> p{{Segment::Kind::key, "env", 0, {}, {}}, {Segment::Kind::keyed, {}, 2, "name", value}};
    std::string text = kubetrail::model::format_path(p);
    ParsedPath back(text);
    REQUIRE(back.segments().size() == 2);
    CHECK(back.segments()[1].kind == Segment::Kind::keyed);
    CHECK(back.segments()[1].field == "name");
    CHECK(back.segments()[1].value == value);
    CHECK(kubetrail::model::format_path(back.segments()) == text);
  }
  // A literal "*" is quoted, so a pattern's [name=*] still means any element.
  std::vector<Segment> star{{Segment::Kind::keyed, {}, 0, "name", "*"}};
  CHECK(kubetrail::model::format_path(star) == "[name=\"*\"]");
  auto any = PathPattern::parse("[name=*]");
  std::vector<Segment> other{{Segment::Kind::keyed, {}, 0, "name", "web"}};
  CHECK(any.covers(other));
  CHECK_FALSE(PathPattern::parse("[name=\"*\"]").covers(other));
  // A merge-key field name a reader could not take back: addressed by index.
  std::vector<Segment> odd{{Segment::Kind::keyed, {}, 4, "we]ird", "v"}};
  CHECK(kubetrail::model::format_path(odd) == "[4]");
  CHECK_NOTHROW(ParsedPath(kubetrail::model::format_path(odd)));
}

// PatternSteps answers, by table, what each pattern's own
// PatternSegment::matches() answers (the pruner walks every member of an
// object through it, so it must be exactly that): checked against the
// patterns one by one over random pattern sets and paths.
TEST_CASE("pattern steps: the patterns alive after each step are the ones whose segments match") {
  using kubetrail::model::PatternSteps;
  const std::vector<std::string> pattern_segments{"a",   "b",        "metadata", "*",       "[*]",   "[0]",
                                                  "[1]", "[name=x]", "[name=*]", "[key=x]", "[\"\"]"};
  const std::vector<Segment> segments{
      {Segment::Kind::key, "a", 0, {}, {}},        {Segment::Kind::key, "b", 0, {}, {}},
      {Segment::Kind::key, "metadata", 0, {}, {}}, {Segment::Kind::key, "", 0, {}, {}},
      {Segment::Kind::key, "c", 0, {}, {}},        {Segment::Kind::index, {}, 0, {}, {}},
      {Segment::Kind::index, {}, 1, {}, {}},       {Segment::Kind::keyed, {}, 0, "name", "x"},
      {Segment::Kind::keyed, {}, 1, "name", "y"},  {Segment::Kind::keyed, {}, 0, "key", "x"}};
  uint64_t state = 42;
  auto next = [&](size_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return size_t(state >> 33) % n;
  };
  size_t steps_checked = 0, ends_seen = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<PathPattern> patterns;
    PatternSteps steps;
    const size_t count = 1 + next(round % 10 == 0 ? PatternSteps::kMax : 12);
    for (size_t i = 0; i < count; ++i) {
      std::string text;
      for (size_t depth = 0, n = 1 + next(4); depth < n; ++depth) {
        const std::string& s = pattern_segments[next(pattern_segments.size())];
        if (depth > 0 && s[0] != '[') text += '.';
        text += s;
      }
      patterns.push_back(PathPattern::parse(text));
      steps.add(patterns.back());
    }
    REQUIRE(steps.size() == count);
    const uint64_t all = count == 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
    CHECK(steps.all() == all);
    for (int walk = 0; walk < 20; ++walk) {
      uint64_t alive = all;  // matched every segment so far
      for (size_t depth = 0; depth < 5 && alive; ++depth) {
        const Segment& seg = segments[next(segments.size())];
        uint64_t want = 0, want_ends = 0;
        for (size_t i = 0; i < count; ++i) {
          const auto& segs = patterns[i].segments();
          if (!(alive >> i & 1) || depth >= segs.size() || !segs[depth].matches(seg)) continue;
          want |= uint64_t{1} << i;
          if (depth + 1 == segs.size()) want_ends |= uint64_t{1} << i;
        }
        const uint64_t got = steps.matching(alive, depth, seg);
        REQUIRE(got == want);
        CHECK((got & steps.ending(depth)) == want_ends);
        ends_seen += want_ends != 0;
        ++steps_checked;
        alive = got & ~steps.ending(depth);
      }
    }
  }
  CHECK(steps_checked > 5000);
  CHECK(ends_seen > 500);  // the walks reached patterns' ends, not only their starts
}
