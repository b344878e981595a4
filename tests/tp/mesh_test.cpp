// A job is a mesh (issue 23): which tensors each world rank loads, and how,
// for small Llama-like and MoE (FP8 block scales) tensor lists: pipeline
// stages from the layer pattern (ours, the plan's "pipeline", Hugging Face's
// base_model_pp_plan), tied embeddings, MTP layers, layerless tensors;
// experts whole on their owners both ways with their companions; every
// refusal with its numbers; parts shared by DP replicas; validation before
// any I/O for every rank alike.
// Thread-compatible (doctest runs cases one at a time).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/test_util.h"
#include "tp/mesh.h"
#include "tp/tp_test_util.h"

namespace shardload::tp {
namespace {

using test::MakeTensor;
using test::MustParse;
using Shape = std::vector<std::uint64_t>;

// A checkpoint's tensor list, with pointers for MeshInput and a lookup for
// the splitter.
struct Model {
  std::vector<TensorInfo> list;
  std::vector<const TensorInfo*> ptrs;
  std::map<std::string, const TensorInfo*, std::less<>> by_name;

  void Add(std::string name, DType dtype, Shape shape) {
    list.push_back(MakeTensor(std::move(name), dtype, std::move(shape)));
  }
  void Finish() {
    for (const TensorInfo& t : list) {
      ptrs.push_back(&t);
      by_name[t.name] = &t;
    }
  }
  bool HasLmHead() const {
    for (const TensorInfo& t : list) {
      if (IsLmHead(t.name)) return true;
    }
    return false;
  }
  FindTensor Find() const {
    return [this](std::string_view name) -> const TensorInfo* {
      auto it = by_name.find(name);
      return it == by_name.end() ? nullptr : it->second;
    };
  }
  std::size_t Index(std::string_view name) const {
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (list[i].name == name) return i;
    }
    FAIL("no tensor " << name);
    return 0;
  }
};

// A Llama-like model of LAYERS layers (H = 8, 2 heads of 4, I = 16, V = 32).
Model Llama(unsigned layers, bool lm_head, unsigned mtp = 0) {
  Model m;
  m.Add("model.embed_tokens.weight", DType::kBF16, {32, 8});
  for (unsigned l = 0; l < layers + mtp; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    m.Add(p + "input_layernorm.weight", DType::kBF16, {8});
    m.Add(p + "self_attn.q_proj.weight", DType::kBF16, {8, 8});
    m.Add(p + "self_attn.o_proj.weight", DType::kBF16, {8, 8});
    m.Add(p + "mlp.down_proj.weight", DType::kBF16, {8, 16});
  }
  m.Add("model.norm.weight", DType::kBF16, {8});
  m.Add("model.rotary_emb.inv_freq", DType::kF32, {4});
  if (lm_head) m.Add("lm_head.weight", DType::kBF16, {32, 8});
  m.Finish();
  return m;
}

constexpr std::string_view kLlamaPlan = R"({"tp_plan_version": 1, "rules": [
  {"match": "**.q_proj", "split": "col", "unit": 4},
  {"match": "**.o_proj", "split": "row", "unit": 4},
  {"match": "**.down_proj", "split": "row"},
  {"match": "**.embed_tokens", "split": "vocab"},
  {"match": "lm_head", "split": "vocab"}]})";

// An MoE model: 4 layers, 8 experts per layer, FP8 weights with 4x4 block
// scales (H = 8, I = 8).
Model Moe() {
  Model m;
  m.Add("model.embed_tokens.weight", DType::kBF16, {32, 8});
  auto fp8 = [&m](const std::string& name, std::uint64_t n, std::uint64_t k) {
    m.Add(name + ".weight", DType::kF8E4M3, {n, k});
    m.Add(name + ".weight_scale_inv", DType::kF32, {(n + 3) / 4, (k + 3) / 4});
  };
  for (unsigned l = 0; l < 4; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    fp8(p + "self_attn.q_proj", 8, 8);
    m.Add(p + "mlp.gate.weight", DType::kBF16, {8, 8});
    for (unsigned e = 0; e < 8; ++e) {
      fp8(fmt::format("{}mlp.experts.{}.gate_proj", p, e), 8, 8);
      fp8(fmt::format("{}mlp.experts.{}.down_proj", p, e), 8, 8);
    }
  }
  m.Add("model.norm.weight", DType::kBF16, {8});
  m.Add("lm_head.weight", DType::kBF16, {32, 8});
  m.Finish();
  return m;
}

constexpr std::string_view kMoePlan = R"({"tp_plan_version": 1,
  "quantization_config": {"quant_method": "fp8", "weight_block_size": [4, 4]},
  "rules": [
  {"match": "**.q_proj", "split": "col", "unit": 4},
  {"match": "**.experts.{expert}.gate_proj", "split": "col"},
  {"match": "**.experts.{expert}.down_proj", "split": "row"}]})";

ModelInfo Info(std::optional<std::uint64_t> layers, std::optional<std::uint64_t> experts = {},
               bool tie = false) {
  ModelInfo info;
  info.path = "config.json";
  info.num_layers = layers;
  info.num_experts = experts;
  info.tie_word_embeddings = tie;
  return info;
}

// Everything a MeshPlan is made from, kept alive together.
struct Job {
  const Model& model;
  const Plan* plan;
  ModelInfo info;
  std::vector<TensorMatch> matches;

  Job(const Model& m, const Plan* p, ModelInfo i) : model(m), plan(p), info(std::move(i)) {
    if (plan == nullptr) return;
    for (const TensorInfo& t : model.list) {
      Result<TensorMatch> match = MatchTensor(*plan, t);
      REQUIRE(match.has_value());
      matches.push_back(*match);
    }
  }
  MeshInput Input(const Layout& layout, unsigned world) const {
    return {plan, &info, layout, world, model.ptrs, matches, model.HasLmHead()};
  }
  MeshPlan Make(const Layout& layout, unsigned world) const {
    Result<MeshPlan> mesh = MeshPlan::Make(Input(layout, world));
    REQUIRE_MESSAGE(mesh.has_value(), shardload::test::ErrorText(mesh));
    return std::move(*mesh);
  }
  Error Refuse(const Layout& layout, unsigned world, ErrorCode code) const {
    Result<MeshPlan> mesh = MeshPlan::Make(Input(layout, world));
    REQUIRE_FALSE(mesh.has_value());
    CHECK(mesh.error().code == code);
    return mesh.error();
  }
  // Rank RANK's tensors: name -> local shape.
  std::map<std::string, Shape> Rank(const MeshPlan& mesh, unsigned rank) const {
    auto slices = SliceRank(mesh, plan, model.ptrs, matches, rank, true, model.Find());
    REQUIRE_MESSAGE(slices.has_value(), shardload::test::ErrorText(slices));
    std::map<std::string, Shape> out;
    for (const RankSlice& s : *slices) out[model.list[s.index].name] = s.slice.shape;
    return out;
  }
};

bool Has(const Error& e, std::string_view needle) {
  return e.detail.find(needle) != std::string::npos;
}

std::set<std::string> Names(const std::map<std::string, Shape>& tensors) {
  std::set<std::string> out;
  for (const auto& [name, shape] : tensors) out.insert(name);
  return out;
}

TEST_CASE("mesh: pipeline stages of a Llama-like model, TP slices within a stage") {
  Model m = Llama(5, /*lm_head=*/true);
  Plan plan = MustParse(kLlamaPlan);
  Job job(m, &plan, Info(5));
  MeshPlan mesh = job.Make({.tp = 2, .pp = 2}, 8);  // DP 2
  // 5 layers over 2 stages: 2 each, the one left to stage 0 (P - 2).
  CHECK(mesh.Layers(0)->begin == 0);
  CHECK(mesh.Layers(0)->end == 3);
  CHECK(mesh.Layers(1)->begin == 3);
  CHECK(mesh.Layers(1)->end == 5);
  // Rank 5 = (1 * 2 + 0) * 2 + 1: stage 1, tp rank 1.
  std::map<std::string, Shape> r5 = job.Rank(mesh, 5);
  std::set<std::string> want;
  for (unsigned l : {3u, 4u}) {
    for (std::string t : {"input_layernorm", "self_attn.q_proj", "self_attn.o_proj",
                          "mlp.down_proj"}) {
      want.insert(fmt::format("model.layers.{}.{}.weight", l, t));
    }
  }
  want.insert("model.norm.weight");
  want.insert("lm_head.weight");
  CHECK(Names(r5) == want);
  CHECK(r5["model.layers.3.self_attn.q_proj.weight"] == Shape{4, 8});
  CHECK(r5["model.layers.4.mlp.down_proj.weight"] == Shape{8, 8});
  CHECK(r5["lm_head.weight"] == Shape{16, 8});
  // Rank 2 = (0 * 2 + 1) * 2 + 0: stage 0, a DP replica of rank 0.
  std::map<std::string, Shape> r2 = job.Rank(mesh, 2);
  CHECK(r2 == job.Rank(mesh, 0));
  CHECK(r2.count("model.embed_tokens.weight") == 1);
  CHECK(r2.count("model.rotary_emb.inv_freq") == 1);  // layerless: first stage
  CHECK(r2.count("model.layers.2.mlp.down_proj.weight") == 1);
  CHECK(r2.count("model.layers.3.mlp.down_proj.weight") == 0);
  CHECK(r2.count("model.norm.weight") == 0);
  CHECK(r2["model.embed_tokens.weight"] == Shape{16, 8});
}

TEST_CASE("mesh: every rank's tensors are its stage's, sliced for its tp rank") {
  Model m = Llama(6, true);
  Plan plan = MustParse(kLlamaPlan);
  Job job(m, &plan, Info(6));
  for (unsigned w : {1u, 2u, 4u, 6u, 8u, 12u}) {
    for (unsigned pp : {1u, 2u, 3u}) {
      for (unsigned tp : {1u, 2u}) {
        if (w % (pp * tp) != 0) continue;
        MeshPlan mesh = job.Make({.tp = tp, .pp = pp}, w);
        for (unsigned r = 0; r < w; ++r) {
          MeshCoords c = mesh.Coords(r);
          std::map<std::string, Shape> got = job.Rank(mesh, r);
          std::map<std::string, Shape> want;
          for (const TensorInfo& t : m.list) {
            std::size_t i = m.Index(t.name);
            if (!mesh.OnStage(i, c.pp_rank)) continue;
            want[t.name] = test::MustSlice(plan, t, c.tp_rank, tp).shape;
          }
          CHECK(got == want);
          std::size_t per_stage = 0;  // every layer's 4 tensors on exactly its stage
          for (const auto& [name, shape] : got) per_stage += name.starts_with("model.layers.");
          if (pp == 1) CHECK(per_stage == 6 * 4);
        }
      }
    }
  }
}

TEST_CASE("mesh: tied embeddings without lm_head go on the first and the last stage") {
  Model m = Llama(4, /*lm_head=*/false);
  Plan plan = MustParse(kLlamaPlan);
  const std::size_t embed = m.Index("model.embed_tokens.weight");
  {
    Job job(m, &plan, Info(4, {}, /*tie=*/true));
    MeshPlan mesh = job.Make({.pp = 4}, 4);
    CHECK(mesh.OnStage(embed, 0));
    CHECK(mesh.OnStage(embed, 3));
    CHECK_FALSE(mesh.OnStage(embed, 1));
    CHECK(job.Rank(mesh, 3).count("model.embed_tokens.weight") == 1);
    CHECK(job.Rank(mesh, 3).count("model.norm.weight") == 1);
  }
  {
    Job job(m, &plan, Info(4, {}, /*tie=*/false));
    MeshPlan mesh = job.Make({.pp = 4}, 4);
    CHECK(mesh.OnStage(embed, 0));
    CHECK_FALSE(mesh.OnStage(embed, 3));
  }
  {  // with an lm_head tensor the embedding stays on the first stage only
    Model with_head = Llama(4, true);
    Job job(with_head, &plan, Info(4, {}, true));
    MeshPlan mesh = job.Make({.pp = 4}, 4);
    CHECK_FALSE(mesh.OnStage(with_head.Index("model.embed_tokens.weight"), 3));
    CHECK(mesh.OnStage(with_head.Index("lm_head.weight"), 3));
  }
}

TEST_CASE("mesh: multi-token-prediction layers (at or past L) go on the last stage") {
  Model m = Llama(6, true, /*mtp=*/1);  // model.layers.6 is DeepSeek's MTP layer
  Plan plan = MustParse(kLlamaPlan);
  Job job(m, &plan, Info(6));
  MeshPlan mesh = job.Make({.pp = 3}, 3);
  const std::size_t mtp = m.Index("model.layers.6.mlp.down_proj.weight");
  CHECK(mesh.tensors()[mtp].layer == 6);
  CHECK(mesh.tensors()[mtp].stage == 2);
  CHECK(mesh.Layers(2)->end == 6);
  CHECK(mesh.tensors()[m.Index("model.layers.5.mlp.down_proj.weight")].stage == 2);
  CHECK(mesh.tensors()[m.Index("model.layers.1.mlp.down_proj.weight")].stage == 0);
}

TEST_CASE("mesh: model.language_model.layers and the plan's num_layers") {
  Model m;
  m.Add("model.language_model.embed_tokens.weight", DType::kBF16, {32, 8});
  for (unsigned l = 0; l < 4; ++l) {
    m.Add(fmt::format("model.language_model.layers.{}.mlp.down_proj.weight", l), DType::kBF16,
          {8, 16});
  }
  m.Add("model.language_model.norm.weight", DType::kBF16, {8});
  m.Add("model.vision_tower.encoder.layers.3.fc.weight", DType::kBF16, {8, 8});
  m.Add("lm_head.weight", DType::kBF16, {32, 8});
  m.Finish();
  Plan plan = MustParse(R"({"tp_plan_version": 1, "num_layers": 4, "rules": []})");
  Job job(m, &plan, Info(std::nullopt));
  MeshPlan mesh = job.Make({.pp = 2}, 2);
  CHECK(*mesh.num_layers() == 4);
  auto stage = [&](std::string_view name) { return mesh.tensors()[m.Index(name)].stage; };
  CHECK(stage("model.language_model.layers.1.mlp.down_proj.weight") == 0);
  CHECK(stage("model.language_model.layers.2.mlp.down_proj.weight") == 1);
  CHECK(stage("model.language_model.embed_tokens.weight") == 0);
  CHECK(stage("model.language_model.norm.weight") == 1);
  CHECK(stage("lm_head.weight") == 1);
  CHECK(stage("model.vision_tower.encoder.layers.3.fc.weight") == 0);  // anything else
}

TEST_CASE("mesh: a plan's \"pipeline\" names the layer pattern and first/last globs") {
  Model m;
  m.Add("transformer.wte.weight", DType::kBF16, {32, 8});
  for (unsigned l = 0; l < 4; ++l) {
    m.Add(fmt::format("transformer.h.{}.mlp.c_fc.weight", l), DType::kBF16, {8, 8});
  }
  m.Add("transformer.ln_f.weight", DType::kBF16, {8});
  m.Add("transformer.ln_f.bias", DType::kBF16, {8});
  m.Finish();
  Plan plan = MustParse(R"({"tp_plan_version": 1, "num_layers": 4,
    "pipeline": {"layer": "transformer.h.{layer}.**", "first": ["transformer.wte"],
                 "last": ["transformer.ln_f"]},
    "rules": []})");
  Job job(m, &plan, Info(std::nullopt, {}, false));
  MeshPlan mesh = job.Make({.pp_layers = {1, 3}}, 2);
  std::set<std::string> last = Names(job.Rank(mesh, 1));
  CHECK(last == std::set<std::string>{"transformer.h.1.mlp.c_fc.weight",
                                      "transformer.h.2.mlp.c_fc.weight",
                                      "transformer.h.3.mlp.c_fc.weight",
                                      "transformer.ln_f.weight", "transformer.ln_f.bias"});
  CHECK(Names(job.Rank(mesh, 0)) ==
        std::set<std::string>{"transformer.wte.weight", "transformer.h.0.mlp.c_fc.weight"});
}

TEST_CASE("mesh: experts whole on their owners, companions with them (linear, round_robin)") {
  Model m = Moe();
  Plan plan = MustParse(kMoePlan);
  Job job(m, &plan, Info(4, /*experts=*/8));
  for (Placement placement : {Placement::kLinear, Placement::kRoundRobin}) {
    // W 8: TP 2, PP 2, DP 2 -> EP 4 per stage.
    MeshPlan mesh = job.Make({.tp = 2, .pp = 2, .ep = true, .ep_placement = placement}, 8);
    for (unsigned r = 0; r < 8; ++r) {
      MeshCoords c = mesh.Coords(r);
      std::map<std::string, Shape> got = job.Rank(mesh, r);
      std::set<unsigned> mine;  // experts of layer 2c.pp_rank (the stage's first)
      for (const auto& [name, shape] : got) {
        unsigned layer = 0, e = 0;
        if (std::sscanf(name.c_str(), "model.layers.%u.mlp.experts.%u.", &layer, &e) != 2) {
          continue;
        }
        CHECK(layer / 2 == c.pp_rank);
        const unsigned owner = placement == Placement::kLinear ? e * 4 / 8 : e % 4;
        CHECK(owner == *c.ep_rank);
        // Whole, weights and block scales alike.
        CHECK(shape == m.by_name[name]->shape);
        if (layer == 2 * c.pp_rank) mine.insert(e);
      }
      std::set<unsigned> want;
      for (unsigned e = 0; e < 8; ++e) {
        if ((placement == Placement::kLinear ? e * 4 / 8 : e % 4) == *c.ep_rank) want.insert(e);
      }
      CHECK(mine == want);
      // 2 experts x 2 projections x (weight, scale) x 2 layers of the stage.
      std::size_t experts = 0;
      for (const auto& [name, shape] : got) experts += name.find(".experts.") != std::string::npos;
      CHECK(experts == 2 * 2 * 2 * 2);
      // Non-expert tensors keep their TP rule: q_proj rows by tp rank.
      const std::string q = fmt::format("model.layers.{}.self_attn.q_proj.weight",
                                        2 * c.pp_rank);
      CHECK(got[q] == Shape{4, 8});
      CHECK(got[fmt::format("model.layers.{}.self_attn.q_proj.weight_scale_inv",
                            2 * c.pp_rank)] == Shape{1, 2});
    }
  }
}

TEST_CASE("mesh: without --ep, expert tensors keep their TP split") {
  Model m = Moe();
  Plan plan = MustParse(kMoePlan);
  Job job(m, &plan, Info(4, 8));
  MeshPlan mesh = job.Make({.tp = 2}, 4);
  std::map<std::string, Shape> r1 = job.Rank(mesh, 1);
  CHECK(r1["model.layers.3.mlp.experts.7.gate_proj.weight"] == Shape{4, 8});
  CHECK(r1["model.layers.3.mlp.experts.7.down_proj.weight"] == Shape{8, 4});
  CHECK(r1["model.layers.3.mlp.experts.7.down_proj.weight_scale_inv"] == Shape{2, 1});
  CHECK_FALSE(mesh.tensors()[m.Index("model.layers.3.mlp.experts.7.gate_proj.weight")]
                  .ep_owner.has_value());
}

TEST_CASE("mesh: an `experts` rule's num_experts wins; under ep EP replaces the TP world") {
  Model m = Moe();
  Plan plan = MustParse(R"({"tp_plan_version": 1,
    "quantization_config": {"quant_method": "fp8", "weight_block_size": [4, 4]},
    "rules": [{"match": "**.experts.{expert}.**", "split": "experts", "num_experts": 8}]})");
  Job job(m, &plan, Info(4, /*experts=*/std::nullopt));
  MeshPlan mesh = job.Make({.tp = 1, .ep = true}, 8);  // DP 8, EP 8: one expert each
  for (unsigned r = 0; r < 8; ++r) {
    std::size_t n = 0;
    for (const auto& [name, shape] : job.Rank(mesh, r)) {
      if (name.find(fmt::format(".experts.{}.", r)) != std::string::npos) ++n;
      CHECK(name.find(".experts.") == name.find(fmt::format(".experts.{}.", r)));
    }
    CHECK(n == 4 * 2 * 2);  // 4 layers x 2 projections x (weight, scale)
  }
}

TEST_CASE("mesh: parts shared by DP replicas; every rank its own under ep") {
  Model m = Llama(4, true);
  Plan plan = MustParse(kLlamaPlan);
  Job job(m, &plan, Info(4));
  MeshPlan mesh = job.Make({.tp = 2, .pp = 2}, 8);
  using Groups = std::vector<std::vector<unsigned>>;
  CHECK(mesh.Parts() == Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
  for (const auto& group : mesh.Parts()) {
    for (unsigned r : group) CHECK(job.Rank(mesh, r) == job.Rank(mesh, group[0]));
  }
  CHECK(job.Make({}, 4).Parts() == Groups{{0}, {1}, {2}, {3}});
  Model moe = Moe();
  Plan moe_plan = MustParse(kMoePlan);
  Job ep(moe, &moe_plan, Info(4, 8));
  CHECK(ep.Make({.tp = 2, .ep = true}, 4).Parts() == Groups{{0}, {1}, {2}, {3}});
}

TEST_CASE("mesh: no plan: pipeline stages of whole tensors; TP > 1 refused") {
  Model m = Llama(4, true);
  Job job(m, nullptr, Info(4));
  MeshPlan mesh = job.Make({.tp = 1, .pp = 2}, 4);  // DP 2
  std::map<std::string, Shape> r3 = job.Rank(mesh, 3);
  CHECK(r3["model.layers.3.self_attn.q_proj.weight"] == Shape{8, 8});
  CHECK(r3.count("model.layers.1.self_attn.q_proj.weight") == 0);
  Error e = job.Refuse({.pp = 2}, 8, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "TP = 4"));
  CHECK(Has(e, "needs a plan"));
}

TEST_CASE("mesh: refusals name their numbers") {
  Model m = Llama(4, true);
  Plan plan = MustParse(kLlamaPlan);
  Job job(m, &plan, Info(4));
  Error e = job.Refuse({.tp = 3}, 8, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "W = 8"));
  CHECK(Has(e, "3 x 1"));
  e = job.Refuse({.pp = 5}, 5, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "PP = 5"));
  CHECK(Has(e, "4 layer(s)"));
  e = job.Refuse({.pp_layers = {2, 1}}, 2, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "2,1"));
  CHECK(Has(e, "model's 4 layers"));
  CHECK(Has(e, "sum to 3"));
  e = job.Refuse({.ep = true}, 2, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "--ep"));
  CHECK(Has(e, "captures `{expert}`"));
  CHECK(e.path == "plan.json");
  Job no_layers(m, &plan, Info(std::nullopt));
  e = no_layers.Refuse({.pp = 2}, 2, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "PP = 2 needs the model's layer count"));
  CHECK(no_layers.Make({.tp = 2}, 2).mesh().pp == 1);  // no layer count needed
}

TEST_CASE("mesh: --ep refusals: unknown expert count, expert past it") {
  Model m = Moe();
  Plan plan = MustParse(kMoePlan);
  Job unknown(m, &plan, Info(4, std::nullopt));
  Error e = unknown.Refuse({.ep = true}, 2, ErrorCode::kInvalidArgument);
  CHECK(Has(e, "number of experts"));
  CHECK(Has(e, "config.json"));
  CHECK(e.tensor.find(".experts.") != std::string::npos);
  CHECK(unknown.Make({}, 2).mesh().tp == 2);  // without --ep E is not needed
  Job few(m, &plan, Info(4, 6));
  e = few.Refuse({.ep = true}, 2, ErrorCode::kTpShapeMismatch);
  CHECK(Has(e, "expert 6 is out of range for E = 6"));
}

TEST_CASE("mesh: a plan refused on another stage's tensor is refused on every rank") {
  Model m = Llama(4, true);
  // Layer 3's o_proj (stage 1) has 8 columns, not a multiple of unit 3.
  Plan plan = MustParse(R"({"tp_plan_version": 1, "rules": [
    {"match": "model.layers.3.self_attn.o_proj", "split": "row", "unit": 3}]})");
  Job job(m, &plan, Info(4));
  MeshPlan mesh = job.Make({.tp = 2, .pp = 2}, 4);
  for (unsigned r = 0; r < 4; ++r) {
    auto slices = SliceRank(mesh, &plan, m.ptrs, job.matches, r, true, m.Find());
    REQUIRE_FALSE(slices.has_value());
    CHECK(slices.error().code == ErrorCode::kTpIndivisible);
    CHECK(slices.error().tensor == "model.layers.3.self_attn.o_proj.weight");
  }
  // Without validation, stage 0 does not look at layer 3.
  CHECK(SliceRank(mesh, &plan, m.ptrs, job.matches, 0, false, m.Find()).has_value());
}

TEST_CASE("pipeline: plan JSON \"pipeline\" and \"num_layers\" refusals") {
  auto refuse = [](std::string_view body) {
    Result<Plan> p = ParsePlanJson(fmt::format(R"({{"tp_plan_version": 1, {}, "rules": []}})",
                                               body), "plan.json");
    REQUIRE_FALSE(p.has_value());
    return p.error();
  };
  Error e = refuse(R"("pipeline": {"layer": "model.layers.*.**"})");
  CHECK(e.code == ErrorCode::kTpBadPattern);
  CHECK(e.detail.find("must capture `{layer}`") != std::string::npos);
  e = refuse(R"("pipeline": {"stages": 2})");
  CHECK(e.code == ErrorCode::kTpPlanJson);
  CHECK(e.detail.find("unknown key \"pipeline\".\"stages\"") != std::string::npos);
  e = refuse(R"("pipeline": {"first": "model.embed_tokens"})");
  CHECK(e.detail.find("must be a list of globs") != std::string::npos);
  e = refuse(R"("pipeline": {"layer": "model.{layer}.{layer}"})");
  CHECK(e.code == ErrorCode::kTpBadPattern);
  CHECK(e.detail.find("`{layer}` appears twice") != std::string::npos);
  e = refuse(R"("num_layers": 0)");
  CHECK(e.detail.find("\"num_layers\" must be a positive integer") != std::string::npos);
  e = refuse(R"("pipeline": [])");
  CHECK(e.detail.find("\"pipeline\" must be an object") != std::string::npos);
  Plan ok = MustParse(R"({"tp_plan_version": 1, "num_layers": 3,
    "pipeline": {"layer": "re:blocks\\.{layer}\\..*"}, "rules": []})");
  REQUIRE(ok.pipeline.has_value());
  CHECK(PlaceTensor(*ok.pipeline, "blocks.2.w", false).layer == 2);
  CHECK(PlaceTensor(*ok.pipeline, "model.embed_tokens.weight", false).kind ==
        StagePlace::Kind::kFirst);
  CHECK(PlaceTensor(*ok.pipeline, "model.norm.weight", false).kind == StagePlace::Kind::kLast);
}

TEST_CASE("pipeline: Hugging Face base_model_pp_plan and expert captures") {
  constexpr std::string_view kConfig = R"({
    "num_hidden_layers": 4, "num_attention_heads": 2, "hidden_size": 8,
    "n_routed_experts": 8, "tie_word_embeddings": false,
    "base_model_tp_plan": {"layers.*.mlp.experts.*.gate_proj": "local_colwise",
                           "layers.*.mlp.experts.*.down_proj": "local_rowwise",
                           "layers.*.mlp.shared_experts.gate_proj": "local_colwise"},
    "base_model_pp_plan": {"wte": [["input_ids"], ["inputs_embeds"]],
                           "layers": [["hidden_states"], ["hidden_states"]],
                           "final_norm": [["hidden_states"], ["hidden_states"]]}})";
  Result<Plan> plan = PlanFromHfConfig(kConfig, "config.json");
  REQUIRE_MESSAGE(plan.has_value(), shardload::test::ErrorText(plan));
  REQUIRE(plan->pipeline.has_value());
  const PipelineSpec& spec = *plan->pipeline;
  CHECK(PlaceTensor(spec, "model.wte.weight", false).kind == StagePlace::Kind::kFirst);
  CHECK(PlaceTensor(spec, "model.final_norm.weight", false).kind == StagePlace::Kind::kLast);
  CHECK(PlaceTensor(spec, "lm_head.weight", false).kind == StagePlace::Kind::kLast);
  CHECK(PlaceTensor(spec, "model.layers.3.mlp.experts.1.gate_proj.weight", false).layer == 3);
  CHECK(PlaceTensor(spec, "model.language_model.layers.2.x", false).layer == 2);
  CHECK(PlaceTensor(spec, "model.norm.weight", false).kind == StagePlace::Kind::kFirst);
  // `experts.*` captures the expert; the shared expert does not.
  Result<RuleMatch> routed = FindRule(*plan, "model.layers.3.mlp.experts.5.gate_proj.weight");
  REQUIRE(routed.has_value());
  REQUIRE(routed->rule != nullptr);
  CHECK(routed->expert == 5);
  CHECK(routed->rule->style == Style::kCol);
  Result<RuleMatch> shared = FindRule(*plan, "model.layers.3.mlp.shared_experts.gate_proj.weight");
  REQUIRE(shared->rule != nullptr);
  CHECK_FALSE(shared->expert.has_value());
  // A pp plan without a layer module leaves the defaults.
  Result<Plan> none = PlanFromHfConfig(R"({"base_model_tp_plan": {},
      "base_model_pp_plan": {"embed_tokens": [["input_ids"], ["inputs_embeds"]]}})", "c.json");
  REQUIRE(none.has_value());
  CHECK_FALSE(none->pipeline.has_value());
}

TEST_CASE("pipeline: config.json's model facts") {
  Result<ModelInfo> a = ParseModelInfo(R"({"num_hidden_layers": 61, "n_routed_experts": 256,
      "num_experts": 9, "tie_word_embeddings": false})", "a/config.json");
  REQUIRE(a.has_value());
  CHECK(a->num_layers == 61);
  CHECK(a->num_experts == 256);  // n_routed_experts first
  CHECK_FALSE(a->tie_word_embeddings);
  Result<ModelInfo> b = ParseModelInfo(R"({"model_type": "llava",
      "text_config": {"num_hidden_layers": 32, "num_local_experts": 8}})", "b/config.json");
  REQUIRE(b.has_value());
  CHECK(b->num_layers == 32);
  CHECK(b->num_experts == 8);
  CHECK(b->tie_word_embeddings);  // Hugging Face's default
  Result<ModelInfo> c = ParseModelInfo(R"({"num_hidden_layers": -1})", "c/config.json");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().code == ErrorCode::kTpPlanJson);
  CHECK(c.error().path == "c/config.json");
  CHECK(c.error().detail.find("num_hidden_layers") != std::string::npos);
}

TEST_CASE("pipeline: lm_head tensors") {
  CHECK(IsLmHead("lm_head.weight"));
  CHECK(IsLmHead("lm_head"));
  CHECK(IsLmHead("language_model.lm_head.weight"));
  CHECK(IsLmHead("lm_head.weight_scale_inv"));
  CHECK_FALSE(IsLmHead("model.lm_head_norm.weight"));
  CHECK_FALSE(IsLmHead("model.embed_tokens.weight"));
}

}  // namespace
}  // namespace shardload::tp
