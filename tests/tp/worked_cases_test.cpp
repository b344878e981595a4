// The worked cases of docs/tp-conventions.md §5 that our plan format can
// express, with the exact rows and byte ranges stated there.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::IndexRanges;
using test::MakeTensor;
using test::MustParse;
using test::MustSlice;
using Ranges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
using Shape = std::vector<std::uint64_t>;

Plan OneRule(std::string_view rule, std::string_view uneven = "chunk") {
  return MustParse(std::string(R"({"tp_plan_version": 1, "uneven": ")") + std::string(uneven) +
                   R"(", "rules": [)" + std::string(rule) + "]}");
}

Ranges RowsOf(const Plan& plan, const TensorInfo& t, unsigned r, unsigned w) {
  return IndexRanges(MustSlice(plan, t, r, w), t);
}

TEST_CASE("case 1: even col split, biases") {
  Plan plan = OneRule(R"({"match": "**.q_proj", "split": "col"},
                         {"match": "**.k_proj", "split": "col"},
                         {"match": "**.o_proj", "split": "row"})");
  TensorInfo q = MakeTensor("model.layers.0.self_attn.q_proj.weight", DType::kBF16, {4096, 4096});
  LocalSlice s = MustSlice(plan, q, 2, 4);
  CHECK(s.shape == Shape{1024, 4096});
  CHECK(s.size == 8388608);
  // Rows [2048, 3072): bytes [16777216, 25165824), one piece.
  CHECK(s.runs == std::vector<Run>{{16777216, 0, 25165824 - 16777216, 1, 0, 0}});

  TensorInfo qb = MakeTensor("model.layers.0.self_attn.q_proj.bias", DType::kBF16, {3584});
  TensorInfo kb = MakeTensor("model.layers.0.self_attn.k_proj.bias", DType::kBF16, {512});
  TensorInfo ob = MakeTensor("model.layers.0.self_attn.o_proj.bias", DType::kBF16, {3584});
  CHECK(RowsOf(plan, qb, 1, 4) == Ranges{{896, 1792}});
  CHECK(RowsOf(plan, kb, 1, 4) == Ranges{{128, 256}});
  LocalSlice o = MustSlice(plan, ob, 1, 4);
  CHECK(o.split_dim == -1);
  CHECK(o.runs == std::vector<Run>{{0, 0, 7168, 1, 0, 0}});
}

TEST_CASE("case 2: uneven [10, 8] over 4 ranks, chunk and balanced") {
  TensorInfo t = MakeTensor("x.weight", DType::kBF16, {10, 8});
  Plan chunk = OneRule(R"({"match": "x", "split": "col"})", "chunk");
  Plan balanced = OneRule(R"({"match": "x", "split": "col"})", "balanced");
  const Ranges want_chunk[] = {{{0, 3}}, {{3, 6}}, {{6, 9}}, {{9, 10}}};
  const Ranges want_balanced[] = {{{0, 3}}, {{3, 6}}, {{6, 8}}, {{8, 10}}};
  for (unsigned r = 0; r < 4; ++r) {
    CHECK(RowsOf(chunk, t, r, 4) == want_chunk[r]);
    CHECK(RowsOf(balanced, t, r, 4) == want_balanced[r]);
  }
  // Byte view of chunk rank 3: row 9 = bytes [144, 160).
  CHECK(MustSlice(chunk, t, 3, 4).runs == std::vector<Run>{{144, 0, 16, 1, 0, 0}});
  // exact refuses; legacy floor (rows 8-9 lost) is deliberately not offered.
  Plan exact = OneRule(R"({"match": "x", "split": "col"})", "exact");
  CHECK(SliceFor(exact, t, 0, 4).error().code == ErrorCode::kTpIndivisible);
}

TEST_CASE("case 3: empty shards") {
  TensorInfo t = MakeTensor("x", DType::kBF16, {5, 8});
  Plan chunk = OneRule(R"({"match": "x", "split": "col"})", "chunk");
  LocalSlice s = MustSlice(chunk, t, 3, 4);  // [5, 5)
  CHECK(s.load);
  CHECK(s.shape == Shape{0, 8});
  CHECK(s.size == 0);
  CHECK(s.runs.empty());
  Plan balanced = OneRule(R"({"match": "x", "split": "col"})", "balanced");
  CHECK(RowsOf(balanced, t, 3, 4) == Ranges{{4, 5}});

  TensorInfo sixteen = MakeTensor("x", DType::kBF16, {16});
  for (unsigned r = 0; r < 14; ++r) {
    LocalSlice piece = MustSlice(chunk, sixteen, r, 14);
    CHECK(piece.shape == Shape{r < 8 ? 2u : 0u});
    if (r < 8) CHECK(IndexRanges(piece, sixteen) == Ranges{{2 * r, 2 * r + 2}});
  }
}

TEST_CASE("case 4: dim-1 (row) split is one strided segment") {
  Plan plan = OneRule(R"({"match": "**.down_proj", "split": "row"})");
  TensorInfo t = MakeTensor("model.layers.0.mlp.down_proj.weight", DType::kBF16, {4096, 14336});
  LocalSlice s = MustSlice(plan, t, 3, 8);  // cols [5376, 7168)
  CHECK(s.shape == Shape{4096, 1792});
  REQUIRE(s.runs.size() == 1);
  const Run& seg = s.runs[0];
  CHECK(seg == Run{10752, 0, 3584, 4096, 28672, 3584});
  CHECK(seg.src_offset + (seg.count - 1) * seg.src_stride == 117422592);
}

TEST_CASE("case 5: GQA with kv replication, separate and fused qkv") {
  // Hq = 64, Hkv = 8, D = 128, H = 8192, W = 16.
  Plan plan = OneRule(R"(
      {"match": "**.q_proj", "split": "col", "unit": 128},
      {"match": "re:.*\\.(k|v)_proj", "split": "col", "unit": 128, "replicate_when_fewer": true},
      {"match": "**.qkv_proj", "split": "col", "blocks": [8192, 1024, 1024], "unit": 128,
       "replicate_when_fewer": [false, true, true]})");
  TensorInfo q = MakeTensor("l.q_proj.weight", DType::kBF16, {8192, 8192});
  TensorInfo k = MakeTensor("l.k_proj.weight", DType::kBF16, {1024, 8192});
  TensorInfo v = MakeTensor("l.v_proj.weight", DType::kBF16, {1024, 8192});
  CHECK(RowsOf(plan, q, 5, 16) == Ranges{{2560, 3072}});
  CHECK(RowsOf(plan, k, 5, 16) == Ranges{{256, 384}});  // kv head 2 ...
  CHECK(RowsOf(plan, k, 4, 16) == Ranges{{256, 384}});  // ... shared with r = 4
  CHECK(RowsOf(plan, v, 5, 16) == Ranges{{256, 384}});
  for (unsigned r = 0; r < 16; ++r) {
    CHECK(RowsOf(plan, k, r, 16) == Ranges{{r / 2 * 128, r / 2 * 128 + 128}});
  }

  TensorInfo qkv = MakeTensor("l.qkv_proj.weight", DType::kBF16, {10240, 8192});
  LocalSlice s = MustSlice(plan, qkv, 5, 16);
  CHECK(s.shape == Shape{768, 8192});  // q[0,512) | k[512,640) | v[640,768)
  CHECK(IndexRanges(s, qkv) == Ranges{{2560, 3072}, {8448, 8576}, {9472, 9600}});
  const std::uint64_t row = 8192 * 2;
  CHECK(s.runs == std::vector<Run>{{2560 * row, 0, 512 * row, 1, 0, 0},
                                           {8448 * row, 512 * row, 128 * row, 1, 0, 0},
                                           {9472 * row, 640 * row, 128 * row, 1, 0, 0}});
}

TEST_CASE("case 6: Megatron interleaved qkv as whole query groups") {
  // np = 32, ng = 8, hn = 128: a group is (32/8 + 2) * 128 = 768 rows.
  Plan plan = OneRule(R"({"match": "**.linear_qkv", "split": "col", "unit": 768,
                          "uneven": "exact"})");
  TensorInfo t = MakeTensor("decoder.layers.0.self_attention.linear_qkv.weight", DType::kBF16,
                            {6144, 4096});
  CHECK(RowsOf(plan, t, 1, 4) == Ranges{{1536, 3072}});  // groups 2, 3
}

TEST_CASE("case 7: packed gate_up, 2-D, 3-D experts and Llama4 transposed") {
  Plan plan = OneRule(R"({"match": "**.gate_up_proj", "split": "col", "blocks": 2},
                         {"match": "**.gate_up_t", "split": "row", "blocks": 2})");
  TensorInfo t = MakeTensor("mlp.gate_up_proj.weight", DType::kBF16, {28672, 4096});
  LocalSlice s = MustSlice(plan, t, 1, 4);
  CHECK(s.shape == Shape{7168, 4096});  // [G1; U1]
  CHECK(IndexRanges(s, t) == Ranges{{3584, 7168}, {17920, 21504}});

  TensorInfo fused = MakeTensor("mlp.experts.gate_up_proj", DType::kBF16, {8, 28672, 4096});
  LocalSlice f = MustSlice(plan, fused, 1, 4);
  CHECK(f.split_dim == 1);
  CHECK(f.shape == Shape{8, 7168, 4096});
  CHECK(IndexRanges(f, fused) == Ranges{{3584, 7168}, {17920, 21504}});
  CHECK(f.runs[0].count == 8);
  CHECK(f.runs[0].src_stride == 28672ull * 4096 * 2);
  CHECK(f.runs[0].dst_stride == 7168ull * 4096 * 2);

  TensorInfo llama4 = MakeTensor("mlp.experts.gate_up_t", DType::kBF16, {8, 4096, 28672});
  LocalSlice l = MustSlice(plan, llama4, 1, 4);
  CHECK(l.split_dim == 2);
  CHECK(l.shape == Shape{8, 4096, 7168});
  CHECK(IndexRanges(l, llama4) == Ranges{{3584, 7168}, {17920, 21504}});
  CHECK(l.runs[1].count == 8 * 4096);
  CHECK(l.runs[1].dst_offset == 3584 * 2);
}

TEST_CASE("case 8: vocab padding (vLLM) and chunk") {
  Plan plan = OneRule(R"({"match": "**.embed_tokens", "split": "vocab", "pad_to": 64},
                         {"match": "**.lm_head", "split": "col"},
                         {"match": "**.embed_chunk", "split": "vocab", "uneven": "chunk"})");
  TensorInfo e = MakeTensor("model.embed_tokens.weight", DType::kBF16, {32001, 4096});
  const std::uint64_t row = 4096 * 2;
  LocalSlice s = MustSlice(plan, e, 3, 4);  // padded 32064, 8016 rows each
  CHECK(s.shape == Shape{8016, 4096});
  CHECK(s.zero_fill);  // local rows 7953..8015 are zero
  CHECK(s.runs == std::vector<Run>{{24048 * row, 0, 7953 * row, 1, 0, 0}});
  LocalSlice s0 = MustSlice(plan, e, 0, 4);
  CHECK_FALSE(s0.zero_fill);
  CHECK(s0.runs == std::vector<Run>{{0, 0, 8016 * row, 1, 0, 0}});

  TensorInfo head = MakeTensor("lm_head.weight", DType::kBF16, {32001, 4096});
  CHECK(RowsOf(plan, head, 3, 4) == Ranges{{24003, 32001}});
  TensorInfo chunked = MakeTensor("model.embed_chunk.weight", DType::kBF16, {32001, 4096});
  LocalSlice c = MustSlice(plan, chunked, 3, 4);
  CHECK(IndexRanges(c, chunked) == Ranges{{24003, 32001}});
  CHECK_FALSE(c.zero_fill);
}

// The experts rank R owns of 128 under PLAN, W = 6.
std::vector<std::uint64_t> Owned(const Plan& plan, unsigned r) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t e = 0; e < 128; ++e) {
    TensorInfo t = MakeTensor("model.layers.0.mlp.experts." + std::to_string(e) +
                                  ".gate_proj.weight", DType::kBF16, {4, 4});
    if (MustSlice(plan, t, r, 6).load) out.push_back(e);
  }
  return out;
}

std::vector<std::uint64_t> Iota(std::uint64_t begin, std::uint64_t end, std::uint64_t step = 1) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t e = begin; e < end; e += step) out.push_back(e);
  return out;
}

TEST_CASE("case 9: expert parallelism, E = 128 over 6 ranks") {
  constexpr std::string_view kRule =
      R"({"match": "model.layers.*.mlp.experts.{expert}.**", "split": "experts",
          "num_experts": 128, "placement": "PLACEMENT", "uneven": "UNEVEN"})";
  auto plan_for = [&](std::string_view placement, std::string_view uneven) {
    std::string rule(kRule);
    rule.replace(rule.find("PLACEMENT"), 9, placement);
    rule.replace(rule.find("UNEVEN"), 6, uneven);
    return OneRule(rule);
  };
  Plan linear = plan_for("linear", "balanced");
  const std::uint64_t bounds[] = {0, 22, 44, 65, 86, 107, 128};
  for (unsigned r = 0; r < 6; ++r) CHECK(Owned(linear, r) == Iota(bounds[r], bounds[r + 1]));
  Plan rr = plan_for("round_robin", "balanced");
  CHECK(Owned(rr, 2) == Iota(2, 128, 6));
  CHECK(Owned(rr, 2).size() == 21);
  Plan chunk = plan_for("linear", "chunk");
  CHECK(Owned(chunk, 5) == Iota(110, 128));
  // HF grouped_gemm and Megatron: E % W != 0 is an error.
  Plan exact = plan_for("linear", "exact");
  TensorInfo t = MakeTensor("model.layers.0.mlp.experts.0.gate_proj.weight", DType::kBF16, {4});
  Result<LocalSlice> refused = SliceFor(exact, t, 0, 6);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::kTpIndivisible);
}

TEST_CASE("case 10: quantised tensors that follow their module's rule") {
  Plan fp8 = OneRule(R"({"match": "**.q_proj", "split": "col"})");
  TensorInfo w = MakeTensor("l.q_proj.weight", DType::kF8E4M3, {18432, 7168});
  TensorInfo scale = MakeTensor("l.q_proj.weight_scale_inv", DType::kF32, {144, 56});
  CHECK(RowsOf(fp8, w, 3, 8) == Ranges{{6912, 9216}});
  CHECK(RowsOf(fp8, scale, 3, 8) == Ranges{{54, 72}});
  TensorInfo odd = MakeTensor("l.q_proj.weight", DType::kF8E4M3, {768, 2048});
  CHECK(RowsOf(fp8, odd, 1, 4) == Ranges{{192, 384}});
  // Without a quantization_config the rule applies to each tensor as it is
  // (as above); with one, scales follow their weight: quant_test.cpp.

  // GPTQ 4-bit, g = 128, o_proj row-parallel: everything on dim 0.
  Plan gptq_row = OneRule(R"({"match": "**.o_proj", "split": "row", "dim": 0})");
  auto t = [](std::string suffix, DType dt, Shape shape) {
    return MakeTensor("l.o_proj." + suffix, dt, std::move(shape));
  };
  CHECK(RowsOf(gptq_row, t("qweight", DType::kI32, {512, 4096}), 2, 4) == Ranges{{256, 384}});
  CHECK(RowsOf(gptq_row, t("scales", DType::kF16, {32, 4096}), 2, 4) == Ranges{{16, 24}});
  CHECK(RowsOf(gptq_row, t("qzeros", DType::kI32, {32, 512}), 2, 4) == Ranges{{16, 24}});
  CHECK(RowsOf(gptq_row, t("g_idx", DType::kI32, {4096}), 2, 4) == Ranges{{2048, 3072}});
  // desc_act: scales and qzeros stay whole.
  Plan desc_act = OneRule(R"json({"match": "re:.*\\.(scales|qzeros)", "split": "replicate"},
                             {"match": "**.o_proj", "split": "row", "dim": 0})json");
  CHECK(MustSlice(desc_act, t("scales", DType::kF16, {32, 4096}), 2, 4).split_dim == -1);
  CHECK(RowsOf(desc_act, t("qweight", DType::kI32, {512, 4096}), 2, 4) == Ranges{{256, 384}});

  // Same GPTQ as a column layer (q_proj): dim -1; g_idx whole.
  Plan gptq_col = OneRule(R"({"match": "re:.*\\.g_idx", "split": "replicate"},
                             {"match": "**.q_proj", "split": "col", "dim": -1})");
  auto q = [](std::string suffix, DType dt, Shape shape) {
    return MakeTensor("l.q_proj." + suffix, dt, std::move(shape));
  };
  CHECK(RowsOf(gptq_col, q("qweight", DType::kI32, {512, 4096}), 2, 4) == Ranges{{2048, 3072}});
  CHECK(RowsOf(gptq_col, q("scales", DType::kF16, {32, 4096}), 2, 4) == Ranges{{2048, 3072}});
  CHECK(RowsOf(gptq_col, q("qzeros", DType::kI32, {32, 512}), 2, 4) == Ranges{{256, 384}});
  CHECK(MustSlice(gptq_col, q("g_idx", DType::kI32, {4096}), 2, 4).shape == Shape{4096});
  // AWQ column: qweight [4096, 512] cols [256, 384).
  CHECK(RowsOf(gptq_col, q("qweight", DType::kI32, {4096, 512}), 2, 4) == Ranges{{256, 384}});
}

TEST_CASE("sub-byte dtypes: whole-byte splits work, others are refused") {
  Plan plan = OneRule(R"({"match": "x", "split": "col"}, {"match": "y", "split": "row"},
                         {"match": "z", "split": "replicate"})");
  TensorInfo x = MakeTensor("x", DType::kF4, {8, 3});  // rows of 12 bits
  CHECK(RowsOf(plan, x, 1, 4) == Ranges{{2, 4}});      // 24 bits per 2 rows
  CHECK(MustSlice(plan, x, 1, 4).runs == std::vector<Run>{{3, 0, 3, 1, 0, 0}});
  CHECK(SliceFor(plan, x, 0, 8).error().code == ErrorCode::kTpMisaligned);
  TensorInfo y = MakeTensor("y", DType::kF6E2M3, {2, 8});  // 8 cols = 48 bits
  CHECK(MustSlice(plan, y, 1, 2).runs == std::vector<Run>{{3, 0, 3, 2, 6, 3}});
  CHECK(SliceFor(plan, y, 0, 4).error().code == ErrorCode::kTpMisaligned);  // 2 cols = 12 bits
  TensorInfo z = MakeTensor("z", DType::kF4, {3, 2});
  CHECK(MustSlice(plan, z, 2, 3).runs == std::vector<Run>{{0, 0, 3, 1, 0, 0}});
  TensorInfo w1 = MakeTensor("y", DType::kF4, {2, 1});  // whole-dim run for W = 1
  CHECK(MustSlice(plan, w1, 0, 1).runs == std::vector<Run>{{0, 0, 1, 1, 0, 0}});
}

}  // namespace
}  // namespace shardload::tp
