// Plan patterns: `*`, `**`, `{expert}`, in-component `*`, `re:` regexes
// (whole-name matches, `{expert}` capture) and malformed patterns.
#include <doctest/doctest.h>

#include "tp/pattern.h"

namespace shardload::tp {
namespace {

Pattern MustCompile(std::string_view text) {
  Result<Pattern> p = Pattern::Compile(text);
  if (!p) FAIL(p.error().ToString());
  return std::move(*p);
}

bool Matches(std::string_view pattern, std::string_view name,
             std::optional<std::uint64_t>* expert = nullptr) {
  Result<bool> r = MustCompile(pattern).Match(name, expert);
  REQUIRE(r.has_value());
  return *r;
}

TEST_CASE("glob: * is exactly one component, ** any number") {
  CHECK(Matches("model.layers.*.mlp", "model.layers.0.mlp"));
  CHECK(Matches("model.layers.*.mlp", "model.layers.abc.mlp"));
  CHECK_FALSE(Matches("model.layers.*.mlp", "model.layers.mlp"));
  CHECK_FALSE(Matches("model.layers.*.mlp", "model.layers.0.1.mlp"));
  CHECK(Matches("**.mlp", "mlp"));
  CHECK(Matches("**.mlp", "a.b.c.mlp"));
  CHECK_FALSE(Matches("**.mlp", "a.mlp.b"));
  CHECK(Matches("model.**", "model"));
  CHECK(Matches("model.**", "model.a.b"));
  CHECK(Matches("**", "anything.at.all"));
  CHECK(Matches("a.**.b.**.c", "a.b.c"));
  CHECK(Matches("a.**.b.**.c", "a.x.b.y.z.c"));
  CHECK_FALSE(Matches("a.**.b.**.c", "a.x.c"));
  CHECK(Matches("a.**.**.b", "a.b"));
  CHECK_FALSE(Matches("model.layers", "model.layers.0"));
  CHECK_FALSE(Matches("layers.0", "model.layers.0"));  // whole name only
}

TEST_CASE("glob: * inside a component stays inside it") {
  CHECK(Matches("**.*norm*", "model.layers.0.input_layernorm"));
  CHECK(Matches("**.*norm*", "model.norm"));
  CHECK_FALSE(Matches("**.*norm*", "model.normal.x"));
  CHECK(Matches("model.*_proj", "model.q_proj"));
  CHECK_FALSE(Matches("model.*_proj", "model.a.q_proj"));
}

TEST_CASE("glob: {expert} captures one all-digit component") {
  std::optional<std::uint64_t> e;
  CHECK(Matches("model.layers.*.mlp.experts.{expert}.gate_proj",
                "model.layers.3.mlp.experts.17.gate_proj", &e));
  CHECK(e == 17u);
  CHECK_FALSE(Matches("**.experts.{expert}.w1", "x.experts.a1.w1", &e));
  CHECK_FALSE(Matches("**.experts.{expert}.w1", "x.experts..w1", &e));
  CHECK_FALSE(Matches("**.experts.{expert}", "x.experts.99999999999999999999", &e));
  // Backtracking over ** re-captures: the successful alignment wins.
  CHECK(Matches("**.{expert}.a", "1.a.2.a", &e));
  CHECK(e == 2u);
}

TEST_CASE("regex: RE2, whole name, {expert} capture") {
  CHECK(Matches(R"(re:model\.layers\.\d+\.mlp\..*)", "model.layers.12.mlp.up_proj.weight"));
  CHECK_FALSE(Matches(R"(re:mlp)", "model.mlp"));  // anchored at both ends: the whole name
  CHECK(Matches(R"(re:.*mlp)", "model.mlp"));
  std::optional<std::uint64_t> e;
  CHECK(Matches(R"(re:(model|lm)\.(?:x)\.[a-z]+\.{expert}\.(w1|w3))", "model.x.experts.5.w3", &e));
  CHECK(e == 5u);
  CHECK(Matches(R"(re:[(]\(a\){expert})", "((a)42", &e));  // escaped and bracketed parens
  CHECK(e == 42u);
  // Python-style named groups before {expert} do not shift its capture.
  CHECK(Matches(R"(re:(?P<layer>\d+)\.(x|y)\.{expert})", "3.y.17", &e));
  CHECK(e == 17u);
  // {expert} inside an alternative that did not take part: no match.
  CHECK_FALSE(Matches(R"(re:a\.(?:{expert}|b))", "a.b", &e));
}

TEST_CASE("malformed patterns are refused") {
  for (std::string_view bad :
       {"", "a..b", ".a", "a.", "a**", "a.**b", "{expert}.{expert}", "a.{x}", "a{expert}",
        "layers.*.self_attn.{q,k,v}_proj", "re:", "re:(", "re:a{expert}b{expert}", "re:[a"}) {
    CAPTURE(bad);
    Result<Pattern> p = Pattern::Compile(bad);
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().code == ErrorCode::kTpBadPattern);
  }
}

TEST_CASE("regexes: unsupported or oversized syntax is refused") {
  for (std::string bad : std::initializer_list<std::string>{
           "re:\\1", "re:(a)\\1", "re:(?=a)a", "re:(?!a)b",
           "re:a{1001}", "re:.+*s", "re:" + std::string(600, 'a'),
           "re:(?P<shardload_expert>x){expert}"}) {
    CAPTURE(bad);
    Result<Pattern> p = Pattern::Compile(bad);
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().code == ErrorCode::kTpBadPattern);
  }
}

// Patterns that take exponential or high-polynomial time in a backtracking
// engine (std::regex, Python re) on a long non-matching name. With a
// backtracking matcher this test would not finish; RE2 answers each at once.
TEST_CASE("regexes: catastrophic-backtracking patterns match in linear time") {
  const std::string name = std::string(1000, 'a') + "!";
  for (const char* re : {"re:(a*)*b", "re:(.*)*x", "re:((a+)b)+", "re:(a|a)*b", "re:(a|aa)*b",
                         "re:.*.*.*.*.*.*.*.*x", "re:(a{2,3})*c", "re:(?:a+)+$x"}) {
    CAPTURE(re);
    Pattern p = MustCompile(re);
    Result<bool> r = p.Match(name, nullptr);
    REQUIRE(r.has_value());
    CHECK_FALSE(*r);
  }
  // And they still match what they should.
  CHECK(Matches("re:(a|aa)*b", "aaaaab"));
  CHECK(Matches("re:.*.*.*x", "abcx"));
  // Long names are fine for regexes as for globs.
  const std::string long_name(100000, 'a');
  CHECK(Matches("re:a*", long_name));
  CHECK(Matches("**", long_name));
}

TEST_CASE("ParseDigits") {
  CHECK(ParseDigits("0") == 0u);
  CHECK(ParseDigits("18446744073709551615") == 18446744073709551615ull);
  CHECK_FALSE(ParseDigits("18446744073709551616"));
  CHECK_FALSE(ParseDigits(""));
  CHECK_FALSE(ParseDigits("1a"));
}

}  // namespace
}  // namespace shardload::tp
