// Hugging Face plans read from representative config.json texts: Llama
// (heads, kv replication, row o_proj, mlp, unmatched norms and embeddings),
// a nested text_config, Qwen3-MoE per-expert and fused tensors (tp and ep
// plans), Mixtral w1/w2/w3, and refused configs.
#include <string>

#include <doctest/doctest.h>

#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::IndexRanges;
using test::MakeTensor;
using test::MustSlice;
using Ranges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
using Shape = std::vector<std::uint64_t>;

constexpr std::string_view kLlamaPlan = R"(
  "base_model_tp_plan": {
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.mlp.gate_proj": "colwise",
    "layers.*.mlp.up_proj": "colwise",
    "layers.*.mlp.down_proj": "rowwise"
  },
  "base_model_pp_plan": {"embed_tokens": [["input_ids"], ["inputs_embeds"]]})";

// Llama-3-8B's shapes: H = 4096, Hq = 32, Hkv = 8, D = 128 (derived), I = 14336.
const std::string kLlama = std::string(R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
  "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 128256,
  "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}, "tie_word_embeddings": false,)") +
                           std::string(kLlamaPlan) + "}";

constexpr std::string_view kQwen3Moe = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
  "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
  "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
  "base_model_tp_plan": {
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.self_attn.q_norm": "replicated_with_grad_allreduce",
    "layers.*.self_attn.k_norm": "replicated_with_grad_allreduce",
    "layers.*.mlp.experts.gate_up_proj": "packed_colwise",
    "layers.*.mlp.experts.down_proj": "rowwise",
    "layers.*.mlp.experts": "moe_tp_experts",
    "layers.*.mlp.gate_proj": "colwise",
    "layers.*.mlp.up_proj": "colwise",
    "layers.*.mlp.down_proj": "rowwise"
  },
  "base_model_ep_plan": {
    "layers.*.mlp.gate": "ep_router",
    "layers.*.mlp.experts.gate_up_proj": "grouped_gemm",
    "layers.*.mlp.experts.down_proj": "grouped_gemm",
    "layers.*.mlp.experts": "moe_tp_experts"
  }
})";

constexpr std::string_view kMixtral = R"({
  "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
  "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
  "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
  "base_model_tp_plan": {
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.mlp.experts.gate_up_proj": "packed_colwise",
    "layers.*.mlp.experts.down_proj": "rowwise",
    "layers.*.mlp.experts": "moe_tp_experts"
  },
  "base_model_ep_plan": {
    "layers.*.mlp.gate": "ep_router",
    "layers.*.mlp.experts.gate_up_proj": "grouped_gemm",
    "layers.*.mlp.experts.down_proj": "grouped_gemm",
    "layers.*.mlp.experts": "moe_tp_experts"
  }
})";

Plan MustHf(std::string_view config, HfPlanKind kind = HfPlanKind::kTensorParallel) {
  Result<Plan> plan = PlanFromHfConfig(config, "config.json", kind);
  if (!plan) FAIL(plan.error().ToString());
  return std::move(*plan);
}

Ranges Rows(const Plan& plan, const TensorInfo& t, unsigned r, unsigned w) {
  return IndexRanges(MustSlice(plan, t, r, w), t);
}

TensorInfo Bf16(std::string name, Shape shape) {
  return MakeTensor(std::move(name), DType::kBF16, std::move(shape));
}

TEST_CASE("hf llama: heads, kv replication, o_proj, mlp, unmatched tensors") {
  Plan plan = MustHf(kLlama);
  CHECK(plan.order == MatchOrder::kNameFirst);
  CHECK(plan.uneven == Uneven::kChunk);
  TensorInfo q = Bf16("model.layers.7.self_attn.q_proj.weight", {4096, 4096});
  TensorInfo k = Bf16("model.layers.7.self_attn.k_proj.weight", {1024, 4096});
  TensorInfo o = Bf16("model.layers.7.self_attn.o_proj.weight", {4096, 4096});
  CHECK(Rows(plan, q, 1, 4) == Ranges{{1024, 2048}});
  CHECK(Rows(plan, k, 1, 4) == Ranges{{256, 512}});
  CHECK(Rows(plan, o, 1, 4) == Ranges{{1024, 2048}});
  CHECK(MustSlice(plan, o, 1, 4).split_dim == 1);
  // W = 16 > Hkv = 8: kv head r / 2, q by 2 heads.
  CHECK(Rows(plan, k, 5, 16) == Ranges{{256, 384}});
  CHECK(Rows(plan, q, 5, 16) == Ranges{{1280, 1536}});
  // W = 3: 32 heads chunk to 11/11/10, always whole heads.
  CHECK(Rows(plan, q, 2, 3) == Ranges{{22 * 128, 4096}});
  CHECK(Rows(plan, o, 2, 3) == Ranges{{22 * 128, 4096}});
  CHECK(MustSlice(plan, k, 0, 4).rule ==
        R"(base_model_tp_plan "layers.*.self_attn.k_proj": "colwise" -> col unit 128 )"
        R"(replicate_when_fewer [true] uneven chunk)");

  TensorInfo gate = Bf16("model.layers.0.mlp.gate_proj.weight", {14336, 4096});
  TensorInfo down = Bf16("model.layers.0.mlp.down_proj.weight", {4096, 14336});
  CHECK(Rows(plan, gate, 1, 4) == Ranges{{3584, 7168}});
  CHECK(Rows(plan, down, 1, 4) == Ranges{{3584, 7168}});
  CHECK(MustSlice(plan, down, 1, 4).split_dim == 1);

  for (std::string name : {"model.layers.0.input_layernorm.weight", "model.norm.weight"}) {
    LocalSlice s = MustSlice(plan, Bf16(name, {4096}), 1, 4);
    CHECK(s.rule == "unmatched (replicate)");
    CHECK(s.shape == Shape{4096});
  }
  for (std::string name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    CHECK(MustSlice(plan, Bf16(name, {128256, 4096}), 3, 4).shape == Shape{128256, 4096});
  }

  // W = 12 is not a multiple of 8 kv heads: refused naming the key and tensor.
  Result<LocalSlice> refused = SliceFor(plan, k, 0, 12);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::kTpIndivisible);
  CHECK(refused.error().tensor == k.name);
  CHECK(refused.error().path == "config.json");
  CHECK(refused.error().detail.find(R"("layers.*.self_attn.k_proj": "colwise")") !=
        std::string::npos);
}

TEST_CASE("hf: q/k/v biases, nested text_config, explicit head_dim, numeric keys") {
  // Qwen2-7B-like: Hq = 28, Hkv = 4, D = 128, inside text_config.
  std::string config = R"({"model_type": "wrapper", "text_config": {
      "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4, "head_dim": 128,
      "base_model_tp_plan": {"layers.0.self_attn.q_proj": "colwise",
                             "layers.*.self_attn.k_proj": "colwise_rep",
                             "embed_tokens": "embedding_rowwise"}}})";
  Plan plan = MustHf(config);
  TensorInfo qb = Bf16("language_model.model.layers.9.self_attn.q_proj.bias", {3584});
  CHECK(Rows(plan, qb, 1, 4) == Ranges{{896, 1792}});  // 7 heads each
  TensorInfo kb = Bf16("language_model.model.layers.9.self_attn.k_proj.bias", {512});
  CHECK(Rows(plan, kb, 1, 4) == Ranges{{128, 256}});
  CHECK(Rows(plan, kb, 5, 8) == Ranges{{256, 384}});  // kv head 5 / 2
  TensorInfo emb = Bf16("language_model.model.embed_tokens.weight", {10, 2});
  CHECK(Rows(plan, emb, 3, 4) == Ranges{{9, 10}});  // embedding_rowwise: chunk
  CHECK_FALSE(MustSlice(plan, emb, 3, 4).zero_fill);
}

TEST_CASE("hf qwen3-moe: per-expert and fused tensors, dense mlp, norms, router") {
  Plan plan = MustHf(kQwen3Moe);
  TensorInfo gate = Bf16("model.layers.3.mlp.experts.5.gate_proj.weight", {768, 2048});
  TensorInfo up = Bf16("model.layers.3.mlp.experts.5.up_proj.weight", {768, 2048});
  TensorInfo down = Bf16("model.layers.3.mlp.experts.5.down_proj.weight", {2048, 768});
  CHECK(Rows(plan, gate, 1, 4) == Ranges{{192, 384}});
  CHECK(Rows(plan, up, 1, 4) == Ranges{{192, 384}});
  CHECK(Rows(plan, down, 1, 4) == Ranges{{192, 384}});
  CHECK(MustSlice(plan, down, 1, 4).split_dim == 1);
  CHECK(MustSlice(plan, gate, 1, 4).rule.find("per-expert gate_proj: col") != std::string::npos);

  // Fused v5 parameters: the key's own rule (the name beats the module key).
  TensorInfo gate_up = Bf16("model.layers.3.mlp.experts.gate_up_proj", {128, 1536, 2048});
  TensorInfo fused_down = Bf16("model.layers.3.mlp.experts.down_proj", {128, 2048, 768});
  LocalSlice gu = MustSlice(plan, gate_up, 1, 4);
  CHECK(gu.shape == Shape{128, 384, 2048});
  CHECK(IndexRanges(gu, gate_up) == Ranges{{192, 384}, {960, 1152}});
  CHECK(Rows(plan, fused_down, 1, 4) == Ranges{{192, 384}});

  TensorInfo dense = Bf16("model.layers.0.mlp.gate_proj.weight", {6144, 2048});
  CHECK(Rows(plan, dense, 1, 4) == Ranges{{1536, 3072}});
  TensorInfo q_norm = Bf16("model.layers.0.self_attn.q_norm.weight", {128});
  CHECK(MustSlice(plan, q_norm, 1, 4).split_dim == -1);
  CHECK(MustSlice(plan, q_norm, 1, 4).rule.find("replicated_with_grad_allreduce") !=
        std::string::npos);
  TensorInfo router = Bf16("model.layers.0.mlp.gate.weight", {128, 2048});
  CHECK(MustSlice(plan, router, 1, 4).rule == "unmatched (replicate)");
  // Hkv = 4 < W = 8: replicated kv heads.
  TensorInfo k = Bf16("model.layers.0.self_attn.k_proj.weight", {512, 2048});
  CHECK(Rows(plan, k, 7, 8) == Ranges{{384, 512}});
}

TEST_CASE("hf qwen3-moe ep plan: grouped_gemm owns whole experts, exact") {
  Plan plan = MustHf(kQwen3Moe, HfPlanKind::kExpertParallel);
  auto owner = [&](std::string name, std::uint64_t e, unsigned w) {
    int found = -1;
    for (unsigned r = 0; r < w; ++r) {
      std::string tensor = "model.layers.1.mlp.experts." + std::to_string(e) + "." + name;
      TensorInfo t = Bf16(tensor, {768, 2048});
      LocalSlice s = MustSlice(plan, t, r, w);
      if (!s.load) continue;
      CHECK(found == -1);
      CHECK(s.shape == Shape{768, 2048});
      found = static_cast<int>(r);
    }
    return found;
  };
  CHECK(owner("gate_proj.weight", 5, 4) == 0);
  CHECK(owner("up_proj.weight", 40, 4) == 1);
  CHECK(owner("down_proj.weight", 127, 4) == 3);
  // E = 128 over 3 ranks: HF raises; so do we.
  TensorInfo t = Bf16("model.layers.1.mlp.experts.0.gate_proj.weight", {768, 2048});
  Result<LocalSlice> refused = SliceFor(plan, t, 0, 3);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code == ErrorCode::kTpIndivisible);
  // The fused parameter splits dim 0 exactly; attention is not in the ep plan.
  TensorInfo fused = Bf16("model.layers.1.mlp.experts.gate_up_proj", {128, 1536, 2048});
  CHECK(Rows(plan, fused, 1, 4) == Ranges{{32, 64}});
  TensorInfo q = Bf16("model.layers.1.self_attn.q_proj.weight", {4096, 2048});
  CHECK(MustSlice(plan, q, 1, 4).rule == "unmatched (replicate)");
}

TEST_CASE("hf mixtral: w1/w3 col, w2 row, ep ownership") {
  Plan plan = MustHf(kMixtral);
  TensorInfo w1 = Bf16("model.layers.0.block_sparse_moe.experts.3.w1.weight", {14336, 4096});
  TensorInfo w3 = Bf16("model.layers.0.block_sparse_moe.experts.3.w3.weight", {14336, 4096});
  TensorInfo w2 = Bf16("model.layers.0.block_sparse_moe.experts.3.w2.weight", {4096, 14336});
  CHECK(Rows(plan, w1, 1, 4) == Ranges{{3584, 7168}});
  CHECK(Rows(plan, w3, 1, 4) == Ranges{{3584, 7168}});
  CHECK(Rows(plan, w2, 1, 4) == Ranges{{3584, 7168}});
  CHECK(MustSlice(plan, w2, 1, 4).split_dim == 1);
  CHECK(MustSlice(plan, w1, 1, 4).rule.find("Mixtral w1: col") != std::string::npos);
  TensorInfo router = Bf16("model.layers.0.block_sparse_moe.gate.weight", {8, 4096});
  CHECK(MustSlice(plan, router, 1, 4).split_dim == -1);
  TensorInfo k = Bf16("model.layers.0.self_attn.k_proj.weight", {1024, 4096});
  CHECK(Rows(plan, k, 9, 16) == Ranges{{512, 640}});

  Plan ep = MustHf(kMixtral, HfPlanKind::kExpertParallel);
  for (unsigned r = 0; r < 4; ++r) CHECK(MustSlice(ep, w1, r, 4).load == (r == 1));
  for (unsigned r = 0; r < 4; ++r) CHECK(MustSlice(ep, w2, r, 4).load == (r == 1));

  // transformers 4.x Mixtral plans name the per-expert modules directly.
  Plan old = MustHf(R"({"num_attention_heads": 32, "hidden_size": 4096,
      "base_model_tp_plan": {"layers.*.block_sparse_moe.experts.*.w1": "colwise",
                             "layers.*.block_sparse_moe.experts.*.w2": "rowwise"}})");
  CHECK(Rows(old, w1, 1, 4) == Ranges{{3584, 7168}});
  CHECK(MustSlice(old, w2, 1, 4).split_dim == 1);
  CHECK(MustSlice(old, w3, 1, 4).rule == "unmatched (replicate)");
}

TEST_CASE("hf: packed and other styles") {
  Plan plan = MustHf(R"({"base_model_tp_plan": {
      "layers.*.mlp.gate_up_proj": "packed_colwise", "layers.*.mlp.fc": "packed_rowwise",
      "layers.*.attn.qkv_proj": "colwise_rep", "layers.*.x": "local", "layers.*.y": "gather"},
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 2})");
  TensorInfo gu = Bf16("model.layers.0.mlp.gate_up_proj.weight", {8, 3});
  CHECK(Rows(plan, gu, 1, 2) == Ranges{{2, 4}, {6, 8}});
  TensorInfo fc = Bf16("model.layers.0.mlp.fc.weight", {3, 8});
  CHECK(Rows(plan, fc, 0, 2) == Ranges{{0, 2}, {4, 6}});
  // Fused qkv in heads: blocks [8, 4, 4], unit 2, kv replicated for W = 4.
  TensorInfo qkv = Bf16("model.layers.0.attn.qkv_proj.weight", {16, 3});
  CHECK(Rows(plan, qkv, 3, 4) == Ranges{{6, 8}, {10, 12}, {14, 16}});
  for (std::string name : {"model.layers.0.x.weight", "model.layers.0.y.weight"}) {
    CHECK(MustSlice(plan, Bf16(name, {4, 4}), 1, 2).split_dim == -1);
  }
}

TEST_CASE("hf: refused configs") {
  struct Case {
    std::string_view config;
    HfPlanKind kind;
    ErrorCode code;
    std::string_view needle;
  };
  const Case cases[] = {
      {"{", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson, "invalid JSON"},
      {"[]", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson, "JSON object"},
      {R"({"hidden_size": 8})", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson,
       "no \"base_model_tp_plan\""},
      {R"({"base_model_tp_plan": null})", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson,
       "no \"base_model_tp_plan\""},
      {R"({"base_model_tp_plan": {}})", HfPlanKind::kExpertParallel, ErrorCode::kTpPlanJson,
       "no \"base_model_ep_plan\""},
      {R"({"base_model_tp_plan": []})", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson,
       "must be an object"},
      {R"({"base_model_tp_plan": {"a": 1}})", HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson,
       "must be a string"},
      {R"({"base_model_tp_plan": {"a": "colwise", "a": "rowwise"}})", HfPlanKind::kTensorParallel,
       ErrorCode::kTpPlanJson, "\"a\" appears twice"},
      {R"({"base_model_tp_plan": {}, "base_model_tp_plan": {}})", HfPlanKind::kTensorParallel,
       ErrorCode::kTpPlanJson, "appears twice"},
      {R"({"base_model_tp_plan": {"a..b": "colwise"}})", HfPlanKind::kTensorParallel,
       ErrorCode::kTpBadPattern, "\"a..b\""},
      {R"({"base_model_tp_plan": {}, "num_attention_heads": "32"})", HfPlanKind::kTensorParallel,
       ErrorCode::kTpPlanJson, "num_attention_heads"},
      {R"({"base_model_tp_plan": {}, "num_attention_heads": 32, "hidden_size": 100})",
       HfPlanKind::kTensorParallel, ErrorCode::kTpPlanJson, "head_dim"},
      {R"({"base_model_ep_plan": {"layers.*.mlp.experts.down_proj": "grouped_gemm"}})",
       HfPlanKind::kExpertParallel, ErrorCode::kTpPlanJson, "grouped_gemm needs num_experts"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.config);
    Result<Plan> plan = PlanFromHfConfig(c.config, "config.json", c.kind);
    REQUIRE_FALSE(plan.has_value());
    CAPTURE(plan.error().ToString());
    CHECK(plan.error().code == c.code);
    CHECK(plan.error().path == "config.json");
    CHECK(plan.error().detail.find(c.needle) != std::string::npos);
  }
}

TEST_CASE("hf limits: at most kMaxPlanRules entries; a huge key is quoted clipped") {
  auto config = [](const std::string& entries) {
    return R"({"hidden_size": 8, "num_attention_heads": 2, "base_model_tp_plan": {)" + entries +
           "}}";
  };
  std::string entries;
  for (std::size_t i = 0; i <= kMaxPlanRules; ++i) {
    entries += (i ? "," : "") + std::string("\"layers.*.m") + std::to_string(i) + "\": \"colwise\"";
  }
  Result<Plan> many = PlanFromHfConfig(config(entries), "config.json", HfPlanKind::kTensorParallel);
  REQUIRE_FALSE(many.has_value());
  CHECK(many.error().code == ErrorCode::kTpPlanJson);
  CHECK(many.error().detail.find("4097 entries") != std::string::npos);
  CHECK(many.error().detail.find("at most 4096") != std::string::npos);

  const std::string huge(10 << 20, 'k');
  Result<Plan> bad = PlanFromHfConfig(config("\"" + huge + "\": 7"), "config.json",
                                      HfPlanKind::kTensorParallel);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().detail.find("... (10485760 bytes)") != std::string::npos);
  CHECK(bad.error().ToString().size() < 1024);
  Plan labelled = MustHf(config("\"" + huge + "\": \"colwise\""));
  REQUIRE(labelled.rules.size() == 1);
  CHECK(labelled.rules[0].label.size() < 1024);
}

}  // namespace
}  // namespace shardload::tp
