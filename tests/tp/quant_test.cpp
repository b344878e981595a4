// Quantized companions in the splitter (issue 13): the DeepSeek-V3 o_proj
// scale bug, block ranges and straddling, refusals of cut packed elements
// and groups, shape checks, and parsing `quantization_config` in both plan
// formats. Byte-level dequantization checks are in tests/tools/quant_oracle.py.
// Thread-compatible (doctest runs cases one at a time).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <string>
#include <vector>

#include "support/test_util.h"
#include "tp/splitter.h"
#include "tp/tp_plan.h"
#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::MakeTensor;
using test::MustParse;

// A checkpoint's tensors by name, and its lookup for SliceFor.
struct Tensors {
  std::map<std::string, TensorInfo, std::less<>> by_name;
  void Add(TensorInfo t) { by_name[t.name] = std::move(t); }
  FindTensor Find() const {
    return [this](std::string_view name) -> const TensorInfo* {
      auto it = by_name.find(name);
      return it == by_name.end() ? nullptr : &it->second;
    };
  }
  const TensorInfo& operator[](const std::string& name) const { return by_name.at(name); }
};

LocalSlice MustSliceQ(const Plan& plan, const Tensors& ts, const std::string& name,
                      unsigned rank, unsigned world) {
  Result<LocalSlice> s = SliceFor(plan, ts[name], rank, world, ts.Find());
  REQUIRE_MESSAGE(s.has_value(), shardload::test::ErrorText(s));
  return std::move(*s);
}

Error MustRefuse(const Plan& plan, const Tensors& ts, const std::string& name,
                 unsigned world, ErrorCode code) {
  Error first;
  for (unsigned r = 0; r < world; ++r) {  // every rank alike
    Result<LocalSlice> s = SliceFor(plan, ts[name], r, world, ts.Find());
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().code == code);
    CHECK(s.error().tensor == name);
    if (r == 0) first = s.error();
    CHECK(s.error().detail == first.detail);
  }
  return first;
}

bool Has(const Error& e, std::string_view needle) {
  return e.detail.find(needle) != std::string::npos;
}

// DeepSeek-V3's config: MLA heads of 128, o_proj rowwise (the issue's case).
constexpr std::string_view kDeepSeekConfig = R"({
  "hidden_size": 7168, "num_attention_heads": 128, "head_dim": 128,
  "base_model_tp_plan": {"layers.*.self_attn.o_proj": "rowwise",
                         "layers.*.mlp.gate_proj": "colwise"},
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                          "quant_method": "fp8", "weight_block_size": [128, 128]}})";

TEST_CASE("issue 13: DeepSeek-V3 o_proj.weight_scale_inv follows o_proj.weight at W = 8") {
  Result<Plan> plan = PlanFromHfConfig(kDeepSeekConfig, "config.json");
  REQUIRE_MESSAGE(plan.has_value(), shardload::test::ErrorText(plan));
  CHECK(plan->quant.format == QuantFormat::kFp8Block);
  Tensors ts;
  ts.Add(MakeTensor("model.layers.0.self_attn.o_proj.weight", DType::kF8E4M3, {7168, 16384}));
  ts.Add(MakeTensor("model.layers.0.self_attn.o_proj.weight_scale_inv", DType::kF32, {56, 128}));
  for (unsigned r = 0; r < 8; ++r) {
    CAPTURE(r);
    LocalSlice w = MustSliceQ(*plan, ts, "model.layers.0.self_attn.o_proj.weight", r, 8);
    LocalSlice s = MustSliceQ(*plan, ts, "model.layers.0.self_attn.o_proj.weight_scale_inv", r, 8);
    CHECK(w.shape == std::vector<std::uint64_t>{7168, 2048});
    // Was [56, 0] for rank 3 (and [56, 128] for rank 0): the head unit
    // applied to the scale's block axis.
    CHECK(s.shape == std::vector<std::uint64_t>{56, 16});
    CHECK(s.follows == "model.layers.0.self_attn.o_proj.weight");
    CHECK(s.per == 128);
    CHECK_FALSE(s.straddles);
    REQUIRE(s.quant_pieces.size() == 1);
    CHECK(s.quant_pieces[0].weight.begin == 2048 * r);
    CHECK(s.quant_pieces[0].own.begin == 16 * r);
    CHECK(s.quant_pieces[0].own.end == 16 * (r + 1));
  }
}

TEST_CASE("FP8 blocks straddling ranks go to both (column split, uneven)") {
  // [768, 2048], W = 4: chunk of 768 rows gives 192 each; blocks of 128:
  // rank 1 rows [192, 384) -> blocks [1, 3), sharing block 1 with rank 0
  // and block 2 with rank 2 (tp-conventions.md, case 10).
  Plan plan = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    "rules": [{"match": "**.q_proj", "split": "col"}]})");
  Tensors ts;
  ts.Add(MakeTensor("m.q_proj.weight", DType::kF8E4M3, {768, 2048}));
  ts.Add(MakeTensor("m.q_proj.weight_scale_inv", DType::kF32, {6, 16}));
  LocalSlice s = MustSliceQ(plan, ts, "m.q_proj.weight_scale_inv", 1, 4);
  CHECK(s.shape == std::vector<std::uint64_t>{2, 16});
  CHECK(s.split_dim == 0);
  CHECK(s.straddles);
  REQUIRE(s.quant_pieces.size() == 1);
  CHECK(s.quant_pieces[0].weight.begin == 192);
  CHECK(s.quant_pieces[0].weight.end == 384);
  CHECK(s.quant_pieces[0].own.begin == 1);
  CHECK(s.quant_pieces[0].own.end == 3);
  // The segment reads scale rows 1 and 2: bytes [64, 192).
  REQUIRE(s.runs.size() == 1);
  CHECK(s.runs[0].src_offset == 1 * 16 * 4);
  CHECK(s.runs[0].length == 2 * 16 * 4);
  // N = 700: ceil(700/128) = 6 blocks, the last one partial. Rank 3 of 4
  // gets rows [525, 700): it shares block 4 with rank 2; ending at N in the
  // partial block 5 is not a straddle (W = 1 shares nothing).
  ts.Add(MakeTensor("m.q_proj.weight", DType::kF8E4M3, {700, 2048}));
  LocalSlice last = MustSliceQ(plan, ts, "m.q_proj.weight_scale_inv", 3, 4);
  CHECK(last.quant_pieces[0].weight.begin == 525);
  CHECK(last.quant_pieces[0].weight.end == 700);
  CHECK(last.quant_pieces[0].own.begin == 4);
  CHECK(last.quant_pieces[0].own.end == 6);
  CHECK(last.straddles);
  LocalSlice one = MustSliceQ(plan, ts, "m.q_proj.weight_scale_inv", 0, 1);
  CHECK(one.shape == std::vector<std::uint64_t>{6, 16});
  CHECK_FALSE(one.straddles);
}

TEST_CASE("FP8 per-tensor and per-channel scales") {
  Plan plan = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "fp8"},
    "rules": [{"match": "**.up", "split": "col"}, {"match": "**.down", "split": "row"}]})");
  Tensors ts;
  ts.Add(MakeTensor("up.weight", DType::kF8E4M3, {10, 8}));
  ts.Add(MakeTensor("up.weight_scale", DType::kF32, {10, 1}));
  ts.Add(MakeTensor("up.input_scale", DType::kF32, {}));
  ts.Add(MakeTensor("down.weight", DType::kF8E4M3, {8, 10}));
  ts.Add(MakeTensor("down.weight_scale", DType::kF32, {1}));
  LocalSlice ch = MustSliceQ(plan, ts, "up.weight_scale", 3, 4);  // chunk: rows [9, 10)
  CHECK(ch.shape == std::vector<std::uint64_t>{1, 1});
  CHECK(ch.runs[0].src_offset == 9 * 4);
  LocalSlice in = MustSliceQ(plan, ts, "up.input_scale", 3, 4);
  CHECK(in.shape.empty());
  CHECK(in.follows == "up.weight");
  LocalSlice per_tensor = MustSliceQ(plan, ts, "down.weight_scale", 1, 4);
  CHECK(per_tensor.shape == std::vector<std::uint64_t>{1});
  CHECK(per_tensor.size == 4);
  // A per-channel scale of the wrong length is refused, naming both.
  ts.Add(MakeTensor("up.weight_scale", DType::kF32, {9, 1}));
  Error e = MustRefuse(plan, ts, "up.weight_scale", 4, ErrorCode::kTpShapeMismatch);
  CHECK(Has(e, "up.weight"));
  CHECK(Has(e, "expected [10, 1]"));
}

// GPTQ 4-bit, group 128, K = N = 4096 (tp-conventions.md case 10).
Tensors GptqLayer(std::uint64_t k, std::uint64_t n, std::uint64_t g) {
  Tensors ts;
  ts.Add(MakeTensor("o.qweight", DType::kI32, {k / 8, n}));
  ts.Add(MakeTensor("o.qzeros", DType::kI32, {k / g, n / 8}));
  ts.Add(MakeTensor("o.scales", DType::kF16, {k / g, n}));
  ts.Add(MakeTensor("o.g_idx", DType::kI32, {k}));
  return ts;
}

Plan GptqPlan(std::string_view split, bool desc_act, std::string_view extra = "") {
  return MustParse(fmt::format(R"({{"tp_plan_version": 1,
    "quantization_config": {{"quant_method": "gptq", "bits": 4, "group_size": 128,
                            "desc_act": {}}},
    "rules": [{{"match": "o", "split": "{}"{}}}]}})", desc_act ? "true" : "false", split, extra));
}

TEST_CASE("GPTQ row and column splits (tp-conventions.md case 10)") {
  Tensors ts = GptqLayer(4096, 4096, 128);
  Plan row = GptqPlan("row", false);
  CHECK(MustSliceQ(row, ts, "o.qweight", 2, 4).shape == std::vector<std::uint64_t>{128, 4096});
  LocalSlice qw = MustSliceQ(row, ts, "o.qweight", 2, 4);
  CHECK(qw.quant_pieces[0].own.begin == 256);  // rows [256, 384)
  CHECK(qw.quant_pieces[0].weight.begin == 2048);
  LocalSlice sc = MustSliceQ(row, ts, "o.scales", 2, 4);
  CHECK(sc.shape == std::vector<std::uint64_t>{8, 4096});  // rows [16, 24)
  CHECK(sc.quant_pieces[0].own.begin == 16);
  CHECK(MustSliceQ(row, ts, "o.qzeros", 2, 4).shape == std::vector<std::uint64_t>{8, 512});
  LocalSlice gi = MustSliceQ(row, ts, "o.g_idx", 2, 4);
  CHECK(gi.shape == std::vector<std::uint64_t>{1024});
  CHECK(gi.runs[0].src_offset == 2048 * 4);

  Plan col = GptqPlan("col", false);
  LocalSlice cq = MustSliceQ(col, ts, "o.qweight", 2, 4);
  CHECK(cq.shape == std::vector<std::uint64_t>{512, 1024});
  CHECK(cq.split_dim == 1);
  CHECK(MustSliceQ(col, ts, "o.qzeros", 2, 4).shape == std::vector<std::uint64_t>{32, 128});
  CHECK(MustSliceQ(col, ts, "o.scales", 2, 4).shape == std::vector<std::uint64_t>{32, 1024});
  CHECK(MustSliceQ(col, ts, "o.g_idx", 2, 4).shape == std::vector<std::uint64_t>{4096});

  // desc_act: scales and qzeros stay whole under a row split.
  Plan act = GptqPlan("row", true);
  CHECK(MustSliceQ(act, ts, "o.scales", 2, 4).shape == std::vector<std::uint64_t>{32, 4096});
  CHECK(MustSliceQ(act, ts, "o.qzeros", 2, 4).shape == std::vector<std::uint64_t>{32, 512});
  CHECK(MustSliceQ(act, ts, "o.qweight", 2, 4).shape == std::vector<std::uint64_t>{128, 4096});
}

TEST_CASE("GPTQ row split off group bounds is refused before any read") {
  // K = 768 = 6 groups of 128 over W = 4: chunk gives 192 rows each, so
  // rank 0 ends at 192, inside group 1.
  Tensors ts = GptqLayer(768, 256, 128);
  Error e = MustRefuse(GptqPlan("row", false), ts, "o.scales", 4, ErrorCode::kTpMisaligned);
  CHECK(Has(e, "rule"));  // the rule's label
  CHECK(Has(e, "rules[0] \"o\" (row)"));
  CHECK(Has(e, "groups"));
  CHECK(Has(e, "[0, 192)"));
  CHECK(Has(e, "192 is not a multiple of 128"));
  CHECK(Has(e, "o.qweight"));
  // The same split with desc_act keeps the groups whole: accepted.
  CHECK(MustSliceQ(GptqPlan("row", true), ts, "o.scales", 1, 4).shape ==
        std::vector<std::uint64_t>{6, 256});
  // With unit 128 the row split falls on group bounds: accepted.
  Plan unit = GptqPlan("row", false, R"(, "unit": 128)");
  CHECK(MustSliceQ(unit, ts, "o.scales", 1, 4).shape == std::vector<std::uint64_t>{2, 256});
  // ValidatePlan refuses it over the whole checkpoint.
  std::vector<TensorInfo> all;
  for (const auto& [name, t] : ts.by_name) all.push_back(t);
  Status s = ValidatePlan(GptqPlan("row", false), all, 4);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kTpMisaligned);
}

TEST_CASE("a packed dimension split off an element is refused") {
  // AWQ qweight [K, N/8]: N = 96 over W = 8 gives 12 columns each, cutting
  // the I32 that packs columns 8-15.
  Plan plan = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 32},
    "rules": [{"match": "p", "split": "col"}]})");
  Tensors ts;
  ts.Add(MakeTensor("p.qweight", DType::kI32, {64, 12}));
  ts.Add(MakeTensor("p.qzeros", DType::kI32, {2, 12}));
  ts.Add(MakeTensor("p.scales", DType::kF16, {2, 96}));
  Error e = MustRefuse(plan, ts, "p.qweight", 8, ErrorCode::kTpMisaligned);
  CHECK(Has(e, "packed elements"));
  CHECK(Has(e, "[0, 12)"));
  CHECK(Has(e, "12 is not a multiple of 8"));
  MustRefuse(plan, ts, "p.qzeros", 8, ErrorCode::kTpMisaligned);  // also packed along N
  std::vector<TensorInfo> all;
  for (const auto& [name, t] : ts.by_name) all.push_back(t);
  CHECK(ValidatePlan(plan, all, 8).error().code == ErrorCode::kTpMisaligned);
  // W = 4 gives 24 columns: whole I32s.
  CHECK(MustSliceQ(plan, ts, "p.qweight", 1, 4).shape == std::vector<std::uint64_t>{64, 3});
  CHECK(MustSliceQ(plan, ts, "p.qzeros", 1, 4).shape == std::vector<std::uint64_t>{2, 3});
  CHECK(MustSliceQ(plan, ts, "p.scales", 1, 4).shape == std::vector<std::uint64_t>{2, 24});

  // MXFP4 row split cutting a 32-value block: K = 96 (3 blocks) over W = 2.
  Plan mx = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "mxfp4"},
    "rules": [{"match": "**.down_proj", "split": "row"}]})");
  Tensors m;
  m.Add(MakeTensor("e.down_proj_blocks", DType::kU8, {4, 16, 3, 16}));
  m.Add(MakeTensor("e.down_proj_scales", DType::kU8, {4, 16, 3}));
  Error me = MustRefuse(mx, m, "e.down_proj_blocks", 2, ErrorCode::kTpMisaligned);
  CHECK(Has(me, "MXFP4 blocks"));
  CHECK(Has(me, "48 is not a multiple of 32"));
}

TEST_CASE("MXFP4 expert, column and row splits (gpt-oss layout)") {
  Tensors m;
  m.Add(MakeTensor("l.experts.gate_up_proj_blocks", DType::kU8, {4, 12, 4, 16}));
  m.Add(MakeTensor("l.experts.gate_up_proj_scales", DType::kU8, {4, 12, 4}));
  auto plan = [](std::string_view rule) {
    return MustParse(fmt::format(R"({{"tp_plan_version": 1,
      "quantization_config": {{"quant_method": "mxfp4"}},
      "rules": [{}]}})", rule));
  };
  Plan ep = plan(R"({"match": "**.gate_up_proj", "split": "col", "dim": 0, "uneven": "exact"})");
  CHECK(MustSliceQ(ep, m, "l.experts.gate_up_proj_blocks", 1, 2).shape ==
        std::vector<std::uint64_t>{2, 12, 4, 16});
  CHECK(MustSliceQ(ep, m, "l.experts.gate_up_proj_scales", 1, 2).shape ==
        std::vector<std::uint64_t>{2, 12, 4});
  Plan col = plan(R"({"match": "**.gate_up_proj", "split": "col", "unit": 2})");
  LocalSlice cb = MustSliceQ(col, m, "l.experts.gate_up_proj_blocks", 2, 3);
  CHECK(cb.shape == std::vector<std::uint64_t>{4, 4, 4, 16});
  CHECK(cb.split_dim == 1);
  Plan row = plan(R"({"match": "**.gate_up_proj", "split": "row"})");
  LocalSlice rs = MustSliceQ(row, m, "l.experts.gate_up_proj_scales", 1, 2);
  CHECK(rs.shape == std::vector<std::uint64_t>{4, 12, 2});
  CHECK(rs.quant_pieces[0].weight.begin == 64);
  CHECK(rs.quant_pieces[0].own.begin == 2);
}

TEST_CASE("a companion whose weight is absent or mis-shaped is refused") {
  Plan plan = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    "rules": [{"match": "**.q_proj", "split": "col"}]})");
  Tensors ts;
  ts.Add(MakeTensor("q_proj.weight_scale_inv", DType::kF32, {6, 16}));
  Error e = MustRefuse(plan, ts, "q_proj.weight_scale_inv", 2, ErrorCode::kTpShapeMismatch);
  CHECK(Has(e, "q_proj.weight, which is not in the checkpoint"));
  ts.Add(MakeTensor("q_proj.weight", DType::kF8E4M3, {768, 2048}));
  ts.Add(MakeTensor("q_proj.weight_scale_inv", DType::kF32, {6, 15}));
  Error shape = MustRefuse(plan, ts, "q_proj.weight_scale_inv", 2, ErrorCode::kTpShapeMismatch);
  CHECK(Has(shape, "expected [6, 16]"));
  // Without a lookup, SliceFor cannot see the weight: refused, not guessed.
  Result<LocalSlice> blind = SliceFor(plan, ts["q_proj.weight_scale_inv"], 0, 2);
  REQUIRE_FALSE(blind.has_value());
  CHECK(blind.error().code == ErrorCode::kTpShapeMismatch);
  // A vocab split of a quantized tensor is not supported.
  Plan vocab = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
    "rules": [{"match": "**.q_proj", "split": "vocab"}]})");
  ts.Add(MakeTensor("q_proj.weight_scale_inv", DType::kF32, {6, 16}));
  MustRefuse(vocab, ts, "q_proj.weight_scale_inv", 2, ErrorCode::kTpQuantUnsupported);
}

TEST_CASE("quantization_config parsing: our plan (strict) and config.json") {
  auto ours = [](std::string_view q) {
    return ParsePlanJson(fmt::format(R"({{"tp_plan_version": 1, "quantization_config": {},
                                          "rules": []}})", q), "plan.json");
  };
  Result<Plan> gptq = ours(R"({"quant_method": "gptq", "bits": 4, "group_size": -1})");
  REQUIRE(gptq.has_value());
  CHECK(gptq->quant.format == QuantFormat::kGptq);
  CHECK(gptq->quant.group_size == 0);
  Result<Plan> unknown_key = ours(R"({"quant_method": "mxfp4", "sym": true})");
  REQUIRE_FALSE(unknown_key.has_value());
  CHECK(unknown_key.error().code == ErrorCode::kTpPlanJson);
  Result<Plan> bnb = ours(R"({"quant_method": "bitsandbytes"})");
  REQUIRE_FALSE(bnb.has_value());
  CHECK(bnb.error().code == ErrorCode::kTpQuantUnsupported);
  CHECK(bnb.error().detail.find("bitsandbytes") != std::string::npos);
  Result<Plan> bits3 = ours(R"({"quant_method": "gptq", "bits": 3, "group_size": 128})");
  REQUIRE_FALSE(bits3.has_value());
  CHECK(bits3.error().code == ErrorCode::kTpQuantUnsupported);
  Result<Plan> block = ours(R"({"quant_method": "fp8", "weight_block_size": [128]})");
  REQUIRE_FALSE(block.has_value());
  CHECK(block.error().code == ErrorCode::kTpPlanJson);
  // config.json: other keys are ignored; compressed-tensors is refused.
  Result<Plan> awq = PlanFromHfConfig(R"({"base_model_tp_plan": {"a": "colwise"},
      "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128,
                              "version": "gemm", "zero_point": true}})", "config.json");
  REQUIRE(awq.has_value());
  CHECK(awq->quant.format == QuantFormat::kAwq);
  Result<Plan> marlin = PlanFromHfConfig(R"({"base_model_tp_plan": {"a": "colwise"},
      "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
                              "checkpoint_format": "marlin"}})", "config.json");
  REQUIRE_FALSE(marlin.has_value());
  CHECK(marlin.error().code == ErrorCode::kTpQuantUnsupported);
  Result<Plan> nested = PlanFromHfConfig(R"({"text_config": {
      "base_model_tp_plan": {"a": "colwise"},
      "quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 32]}}})",
      "config.json");
  REQUIRE(nested.has_value());
  CHECK(nested->quant.format == QuantFormat::kFp8Block);
  CHECK(nested->quant.block_rows == 64);
  CHECK(nested->quant.block_cols == 32);
  Result<Plan> plain = PlanFromHfConfig(R"({"base_model_tp_plan": {"a": "colwise"}})",
                                        "config.json");
  REQUIRE(plain.has_value());
  CHECK(plain->quant.format == QuantFormat::kNone);
  Result<Plan> ct = PlanFromHfConfig(R"({"base_model_tp_plan": {"a": "colwise"},
      "quantization_config": {"quant_method": "compressed-tensors"}})", "config.json");
  REQUIRE_FALSE(ct.has_value());
  CHECK(ct.error().code == ErrorCode::kTpQuantUnsupported);
  CHECK(ct.error().path == "config.json");
}

}  // namespace
}  // namespace shardload::tp
