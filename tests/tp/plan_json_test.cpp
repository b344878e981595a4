// Our JSON plan: parsing, defaults, and every refusal of a bad plan (at
// parse time naming the rule; at validation time naming the rule and the
// tensor, for every rank alike).
#include <string>

#include <doctest/doctest.h>

#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::MakeTensor;
using test::MustParse;

std::string PlanWith(std::string_view rules, std::string_view top = "") {
  return std::string(R"({"tp_plan_version": 1, )") + std::string(top) + R"("rules": [)" +
         std::string(rules) + "]}";
}

// Parsing TEXT fails with CODE and a detail containing each of NEEDLES.
void CheckParseError(std::string_view text, ErrorCode code,
                     std::initializer_list<std::string_view> needles) {
  CAPTURE(text);
  Result<Plan> plan = ParsePlanJson(text, "plan.json");
  REQUIRE_FALSE(plan.has_value());
  CAPTURE(plan.error().ToString());
  CHECK(plan.error().code == code);
  CHECK(plan.error().path == "plan.json");
  for (std::string_view n : needles) CHECK(plan.error().detail.find(n) != std::string::npos);
}

TEST_CASE("parse: defaults and per-rule resolution") {
  Plan plan = MustParse(PlanWith(
      R"({"match": "a", "split": "col"},
         {"match": "b", "split": "row", "uneven": "exact", "dim": -3, "unit": 4},
         {"match": "c", "split": "vocab", "pad_to": 64},
         {"match": "d.{expert}", "split": "experts", "num_experts": 8},
         {"match": "e", "split": "col", "blocks": [1, 2], "replicate_when_fewer": [true, false]},
         {"match": "f", "split": "skip"}, {"match": "g", "split": "replicate"})",
      R"("uneven": "balanced", "unmatched": "error", )"));
  CHECK(plan.uneven == Uneven::kBalanced);
  CHECK(plan.unmatched == Unmatched::kError);
  REQUIRE(plan.rules.size() == 7);
  CHECK(plan.rules[0].uneven == Uneven::kBalanced);  // the plan's default
  CHECK(plan.rules[0].label == R"(rules[0] "a" (col))");
  CHECK(plan.rules[1].uneven == Uneven::kExact);
  CHECK(plan.rules[1].dim == -3);
  CHECK(plan.rules[1].unit == 4);
  CHECK(plan.rules[2].uneven == Uneven::kExact);     // vocab: W divides P
  CHECK(plan.rules[2].pad_to == 64);
  CHECK(plan.rules[3].uneven == Uneven::kBalanced);  // experts: linear
  CHECK(plan.rules[3].placement == Placement::kLinear);
  CHECK(plan.rules[4].block_sizes == std::vector<std::uint64_t>{1, 2});
  CHECK(plan.rules[4].block_count == 2);
  CHECK(plan.rules[4].replicate_when_fewer == std::vector<bool>{true, false});
  CHECK(plan.rules[5].style == Style::kSkip);

  Plan defaults = MustParse(PlanWith(""));
  CHECK(defaults.uneven == Uneven::kChunk);
  CHECK(defaults.unmatched == Unmatched::kReplicate);
}

TEST_CASE("parse: the document is refused as a whole") {
  CheckParseError("{", ErrorCode::kTpPlanJson, {"invalid JSON at line 1, column 2"});
  CheckParseError("{\"rules\": []}\n x", ErrorCode::kTpPlanJson, {"line 2"});
  CheckParseError("[]", ErrorCode::kTpPlanJson, {"JSON object"});
  CheckParseError(R"({"rules": []})", ErrorCode::kTpPlanJson, {"tp_plan_version"});
  CheckParseError(R"({"tp_plan_version": 2, "rules": []})", ErrorCode::kTpPlanJson,
                  {"must be 1"});
  CheckParseError(R"({"tp_plan_version": 1})", ErrorCode::kTpPlanJson, {"\"rules\""});
  CheckParseError(R"({"tp_plan_version": 1, "rules": {}})", ErrorCode::kTpPlanJson,
                  {"array"});
  CheckParseError(R"({"tp_plan_version": 1, "rules": [], "rules": []})",
                  ErrorCode::kTpPlanJson, {"\"rules\" appears twice"});
  CheckParseError(PlanWith("", R"("defaults": 1, )"), ErrorCode::kTpPlanJson,
                  {"unknown key \"defaults\""});
  CheckParseError(PlanWith("", R"("uneven": "floor", )"), ErrorCode::kTpPlanJson,
                  {"uneven"});
  CheckParseError(PlanWith("", R"("unmatched": "skip", )"), ErrorCode::kTpPlanJson,
                  {"unmatched"});
}

TEST_CASE("parse: bad rules name the rule by index and pattern") {
  struct Case {
    std::string_view rule;
    ErrorCode code;
    std::string_view needle;
  };
  const Case cases[] = {
      {R"({"match": "m.x", "split": "colwise"})",
       ErrorCode::kTpBadRule, "unknown split style `colwise`"},
      {R"({"match": "m.x", "split": "col", "pad_to": 2})",
       ErrorCode::kTpBadRule, "unknown option `pad_to`"},
      {R"({"match": "m.x", "split": "col", "size": 2})",
       ErrorCode::kTpBadRule, "unknown option `size`"},
      {R"({"match": "m.x", "split": "replicate", "dim": 0})",
       ErrorCode::kTpBadRule, "unknown option `dim`"},
      {R"({"match": "m.x", "split": "vocab", "unit": 2})",
       ErrorCode::kTpBadRule, "unknown option `unit`"},
      {R"({"match": "m.x", "split": "col", "unit": 0})",
       ErrorCode::kTpBadRule, "`unit` must be"},
      {R"({"match": "m.x", "split": "col", "unit": -2})",
       ErrorCode::kTpBadRule, "`unit` must be"},
      {R"({"match": "m.x", "split": "col", "unit": "2"})",
       ErrorCode::kTpBadRule, "`unit` must be"},
      {R"({"match": "m.x", "split": "col", "dim": 1.5})",
       ErrorCode::kTpBadRule, "`dim` must be"},
      {R"({"match": "m.x", "split": "col", "blocks": []})",
       ErrorCode::kTpBadRule, "`blocks` must be"},
      {R"({"match": "m.x", "split": "col", "blocks": [2, 0]})",
       ErrorCode::kTpBadRule, "`blocks` must be"},
      {R"({"match": "m.x", "split": "col", "blocks": 0})",
       ErrorCode::kTpBadRule, "`blocks` must be"},
      {R"({"match": "m.x", "split": "col", "replicate_when_fewer": "yes"})",
       ErrorCode::kTpBadRule, "`replicate_when_fewer` must be"},
      {R"({"match": "m.x", "split": "col", "blocks": 3, "replicate_when_fewer": [true, false]})",
       ErrorCode::kTpBadRule, "lists 2 values but the rule has 3 block"},
      {R"({"match": "m.x", "split": "col", "replicate_when_fewer": [true, false]})",
       ErrorCode::kTpBadRule, "lists 2 values but the rule has 1 block"},
      {R"({"match": "m.x", "split": "col", "uneven": "floor"})",
       ErrorCode::kTpBadRule, "`uneven` must be"},
      {R"({"match": "m.x", "split": "vocab", "pad_to": 0})",
       ErrorCode::kTpBadRule, "`pad_to` must be"},
      {R"({"match": "m.{expert}", "split": "experts"})",
       ErrorCode::kTpBadRule, "needs `num_experts`"},
      {R"({"match": "m.x", "split": "experts", "num_experts": 4})",
       ErrorCode::kTpBadRule, "captures `{expert}`"},
      {R"({"match": "m.{expert}", "split": "experts", "num_experts": 4, "placement": "random"})",
       ErrorCode::kTpBadRule, "`placement` must be"},
      {R"({"match": "m.{expert}", "split": "experts", "num_experts": 4,
            "placement": "round_robin", "uneven": "chunk"})",
       ErrorCode::kTpBadRule, "round_robin"},
      {R"({"match": "m.x", "split": "col", "unit": 2, "unit": 4})",
       ErrorCode::kTpBadRule, "\"unit\" appears twice"},
      {R"({"match": "m..x", "split": "col"})",
       ErrorCode::kTpBadPattern, "empty component"},
      {R"({"match": "re:m.(x", "split": "col"})",
       ErrorCode::kTpBadPattern, "invalid regex"},
  };
  for (const Case& c : cases) {
    // The bad rule is rules[1], after a good one.
    std::string text = PlanWith(std::string(R"({"match": "ok", "split": "col"}, )") +
                                std::string(c.rule));
    std::string pattern(c.rule.substr(11, c.rule.find('"', 11) - 11));  // after {"match": "
    CheckParseError(text, c.code, {c.needle, "rules[1]", pattern});
  }
  CheckParseError(PlanWith("3"), ErrorCode::kTpBadRule, {"rules[0]", "must be an object"});
  CheckParseError(PlanWith(R"({"split": "col"})"), ErrorCode::kTpBadRule,
                  {"rules[0]", "`match`"});
  CheckParseError(PlanWith(R"({"match": "a.b"})"), ErrorCode::kTpBadRule,
                  {"rules[0] \"a.b\"", "`split`"});
}

// Slicing TENSOR under PLAN for WORLD fails with CODE for every rank, naming
// the plan, the tensor and the rule.
void CheckRefused(const Plan& plan, const TensorInfo& tensor, unsigned world, ErrorCode code,
                  std::initializer_list<std::string_view> needles) {
  CAPTURE(tensor.name);
  for (unsigned r = 0; r < world; ++r) {
    Result<LocalSlice> slice = SliceFor(plan, tensor, r, world);
    REQUIRE_FALSE(slice.has_value());
    CAPTURE(slice.error().ToString());
    CHECK(slice.error().code == code);
    CHECK(slice.error().path == "plan.json");
    CHECK(slice.error().tensor == tensor.name);
    for (std::string_view n : needles) CHECK(slice.error().detail.find(n) != std::string::npos);
  }
  std::vector<TensorInfo> all = {MakeTensor("a", DType::kF32, {4}), tensor};  // fine
  Status s = ValidatePlan(plan, all, world);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == code);
  CHECK(s.error().tensor == tensor.name);
}

TEST_CASE("validate: tensor-dependent refusals name rule and tensor") {
  Plan plan = MustParse(PlanWith(R"(
      {"match": "dim.x", "split": "col", "dim": 2},
      {"match": "sum.x", "split": "col", "blocks": [4, 4]},
      {"match": "k.x", "split": "col", "blocks": 3},
      {"match": "unit.x", "split": "row", "unit": 3},
      {"match": "blockunit.x", "split": "col", "blocks": [4, 6], "unit": 4},
      {"match": "exact.x", "split": "col", "uneven": "exact"},
      {"match": "rwf.x", "split": "col", "unit": 2, "replicate_when_fewer": true},
      {"match": "vocab.x", "split": "vocab", "pad_to": 8},
      {"match": "exp.{expert}", "split": "experts", "num_experts": 6, "uneven": "exact"},
      {"match": "f4.x", "split": "row"})"));
  CheckRefused(plan, MakeTensor("dim.x", DType::kF32, {4, 4}), 2, ErrorCode::kTpShapeMismatch,
               {"rules[0] \"dim.x\" (col)", "dim 2 is out of range for shape [4, 4]"});
  CheckRefused(plan, MakeTensor("dim.x.weight", DType::kF32, {4, 4}), 2,
               ErrorCode::kTpShapeMismatch, {"rules[0] \"dim.x\""});
  CheckRefused(plan, MakeTensor("sum.x", DType::kBF16, {10, 2}), 2, ErrorCode::kTpShapeMismatch,
               {"rules[1] \"sum.x\"", "blocks [4, 4] do not sum to dim 0"});
  CheckRefused(plan, MakeTensor("k.x", DType::kBF16, {10, 2}), 2, ErrorCode::kTpIndivisible,
               {"rules[2] \"k.x\"", "3 equal blocks"});
  CheckRefused(plan, MakeTensor("unit.x", DType::kBF16, {2, 10}), 2, ErrorCode::kTpIndivisible,
               {"rules[3] \"unit.x\" (row)", "not a multiple of unit 3"});
  CheckRefused(plan, MakeTensor("blockunit.x", DType::kBF16, {10}), 2, ErrorCode::kTpIndivisible,
               {"rules[4]", "block 1 (6 of shape [10]) is not a multiple of unit 4"});
  CheckRefused(plan, MakeTensor("exact.x", DType::kBF16, {10, 3}), 4, ErrorCode::kTpIndivisible,
               {"rules[5] \"exact.x\"", "uneven exact", "not divisible by 4 ranks"});
  CheckRefused(plan, MakeTensor("rwf.x", DType::kBF16, {4, 3}), 3, ErrorCode::kTpIndivisible,
               {"rules[6] \"rwf.x\"", "replicate_when_fewer", "3 is not a multiple of 2"});
  CheckRefused(plan, MakeTensor("vocab.x", DType::kBF16, {10, 3}), 3, ErrorCode::kTpIndivisible,
               {"rules[7] \"vocab.x\" (vocab)", "padded to a multiple of 8 give 16"});
  CheckRefused(plan, MakeTensor("exp.3", DType::kBF16, {2}), 4, ErrorCode::kTpIndivisible,
               {"rules[8] \"exp.{expert}\" (experts)", "6 experts"});
  CheckRefused(plan, MakeTensor("exp.6.weight", DType::kBF16, {2}), 2,
               ErrorCode::kTpShapeMismatch, {"rules[8]", "expert 6 is out of range"});
  CheckRefused(plan, MakeTensor("f4.x", DType::kF4, {2, 5}), 4, ErrorCode::kTpMisaligned,
               {"rules[9] \"f4.x\" (row)", "F4 has 4-bit elements"});
}

TEST_CASE("validate: unmatched error, bad rank, bad size") {
  Plan plan = MustParse(PlanWith(R"({"match": "a", "split": "col"})",
                                 R"("unmatched": "error", )"));
  CheckRefused(plan, MakeTensor("b.weight", DType::kF32, {2}), 2, ErrorCode::kTpUnmatched,
               {"matches no rule"});
  TensorInfo a = MakeTensor("a", DType::kF32, {2});
  Result<LocalSlice> bad_rank = SliceFor(plan, a, 2, 2);
  REQUIRE_FALSE(bad_rank.has_value());
  CHECK(bad_rank.error().code == ErrorCode::kInvalidArgument);
  Result<LocalSlice> no_world = SliceFor(plan, a, 0, 0);
  REQUIRE_FALSE(no_world.has_value());
  CHECK(no_world.error().code == ErrorCode::kInvalidArgument);
  a.size = 9;
  Result<LocalSlice> bad_size = SliceFor(plan, a, 0, 1);
  REQUIRE_FALSE(bad_size.has_value());
  CHECK(bad_size.error().code == ErrorCode::kTensorInvalidInfo);
}

TEST_CASE("matching: first rule wins, name or name without last component") {
  Plan plan = MustParse(PlanWith(R"(
      {"match": "model.layers.*.mlp.down_proj", "split": "row"},
      {"match": "model.layers.**", "split": "skip"},
      {"match": "re:.*\\.bias", "split": "col"})"));
  TensorInfo w = MakeTensor("model.layers.0.mlp.down_proj.weight", DType::kF32, {4, 4});
  TensorInfo b = MakeTensor("model.layers.0.mlp.down_proj.bias", DType::kF32, {4});
  TensorInfo other = MakeTensor("model.layers.0.mlp.up_proj.weight", DType::kF32, {4, 4});
  TensorInfo head = MakeTensor("lm_head.bias", DType::kF32, {4});
  TensorInfo none = MakeTensor("lm_head.weight", DType::kF32, {4, 4});
  CHECK(test::MustSlice(plan, w, 0, 2).rule == R"(rules[0] "model.layers.*.mlp.down_proj" (row))");
  CHECK(test::MustSlice(plan, w, 0, 2).split_dim == 1);
  LocalSlice bias = test::MustSlice(plan, b, 1, 2);  // row: 1-D replicated
  CHECK(bias.rule.starts_with("rules[0]"));
  CHECK(bias.split_dim == -1);
  CHECK(bias.shape == std::vector<std::uint64_t>{4});
  CHECK_FALSE(test::MustSlice(plan, other, 0, 2).load);
  CHECK(test::MustSlice(plan, head, 0, 2).rule.starts_with("rules[2]"));
  CHECK(test::MustSlice(plan, head, 0, 2).shape == std::vector<std::uint64_t>{2});
  LocalSlice unmatched = test::MustSlice(plan, none, 1, 2);
  CHECK(unmatched.rule == "unmatched (replicate)");
  CHECK(unmatched.runs == std::vector<Run>{{0, 0, 64, 1, 0, 0}});

  Result<RuleMatch> m = FindRule(plan, "model.layers.0.mlp.down_proj.weight");
  REQUIRE(m.has_value());
  CHECK(m->rule == &plan.rules[0]);
}

// `count` skip rules r0, r1, ... as the text of a rules array.
std::string ManyRules(std::size_t count) {
  std::string rules;
  for (std::size_t i = 0; i < count; ++i) {
    rules += (i ? "," : "") + std::string(R"({"match": "r)") + std::to_string(i) +
             R"(", "split": "skip"})";
  }
  return rules;
}

TEST_CASE("limits: at most kMaxPlanRules rules; the count said") {
  CHECK(MustParse(PlanWith(ManyRules(kMaxPlanRules))).rules.size() == kMaxPlanRules);
  CheckParseError(PlanWith(ManyRules(kMaxPlanRules + 1)), ErrorCode::kTpPlanJson,
                  {"4097 rules", "at most 4096"});
}

TEST_CASE("limits: a 10 MB pattern or key is quoted clipped, its length said") {
  const std::string huge(10 << 20, 'm');
  const std::string said = "... (10485760 bytes)";
  // An unknown style of a rule whose match is huge: the label quotes it clipped.
  Result<Plan> style = ParsePlanJson(PlanWith(R"({"match": ")" + huge + R"(", "split": "no"})"),
                                     "plan.json");
  REQUIRE_FALSE(style.has_value());
  CHECK(style.error().code == ErrorCode::kTpBadRule);
  CHECK(style.error().detail.find("rules[0] \"" + huge.substr(0, kMaxQuotedName) + said) !=
        std::string::npos);
  CHECK(style.error().ToString().size() < 1024);
  // A huge unknown top-level key, a huge style, a huge unknown option.
  CheckParseError(PlanWith("", "\"" + huge + "\": 1, "), ErrorCode::kTpPlanJson, {said});
  CheckParseError(PlanWith(R"({"match": "a", "split": ")" + huge + "\"}"),
                  ErrorCode::kTpBadRule, {said});
  CheckParseError(PlanWith(R"({"match": "a", "split": "col", ")" + huge + "\": 1}"),
                  ErrorCode::kTpBadRule, {said});
  for (const std::string& text : {PlanWith("", "\"" + huge + "\": 1, "),
                                  PlanWith(R"({"match": "a", "split": ")" + huge + "\"}")}) {
    Result<Plan> plan = ParsePlanJson(text, "plan.json");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.error().ToString().size() < 1024);
  }
}

TEST_CASE("limits: a pad_to past 64-bit sizes is the plan's error (tp_bad_rule), every rank") {
  Plan plan = MustParse(PlanWith(
      R"({"match": "v", "split": "vocab", "pad_to": 9223372036854775808},
         {"match": "w", "split": "vocab", "pad_to": 18446744073709551615, "uneven": "chunk"})"));
  CheckRefused(plan, MakeTensor("v", DType::kBF16, {10, 3}), 2, ErrorCode::kTpBadRule,
               {"rules[0] \"v\" (vocab)", "pad_to 9223372036854775808"});
  CheckRefused(plan, MakeTensor("w", DType::kU8, {1}), 1, ErrorCode::kTpBadRule,
               {"rules[1] \"w\" (vocab)", "pad_to 18446744073709551615"});
}

}  // namespace
}  // namespace shardload::tp
