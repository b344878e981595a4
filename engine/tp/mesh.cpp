// A job's mesh over a checkpoint (see mesh.h): each tensor's stage and
// expert owner decided once, and each rank's part of each tensor.
// Thread-safe: MeshPlan is immutable after Make; functions are pure.
#include "tp/mesh.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace shardload::tp {
namespace {

Error Invalid(std::string path, std::string tensor, std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(path), std::move(tensor),
                   std::move(detail));
}

std::string PlanPath(const MeshInput& in) { return in.plan != nullptr ? in.plan->path : ""; }
std::string ConfigPath(const MeshInput& in) { return in.model != nullptr ? in.model->path : ""; }

// L: the plan's num_layers, else config.json's num_hidden_layers.
std::optional<std::uint64_t> LayerCount(const MeshInput& in) {
  if (in.plan != nullptr && in.plan->num_layers) return in.plan->num_layers;
  if (in.model != nullptr) return in.model->num_layers;
  return std::nullopt;
}

Status CheckPlanForMesh(const MeshInput& in, const Mesh& mesh) {
  if (in.plan == nullptr && mesh.tp > 1) {
    return Invalid("", "", fmt::format("TP = {} (world size W = {}, PP = {}) needs a plan: "
                                       "without one every rank loads whole tensors",
                                       mesh.tp, mesh.world, mesh.pp));
  }
  if (!mesh.ep) return {};
  const bool captures = in.plan != nullptr &&
                        std::any_of(in.plan->rules.begin(), in.plan->rules.end(),
                                    [](const Rule& r) { return r.pattern.has_expert(); });
  if (captures) return {};
  return Invalid(PlanPath(in), "",
                 in.plan == nullptr
                     ? std::string("--ep needs a plan whose rules capture `{expert}`: no plan "
                                   "was given")
                     : fmt::format("--ep: no rule of the plan captures `{{expert}}` ({} "
                                   "rule(s)), so no tensor is an expert tensor",
                                   in.plan->rules.size()));
}

// The stage of layer L (past the last layer: the last stage).
std::uint32_t StageOfLayer(const std::vector<Range>& stages, std::uint64_t layer) {
  auto it = std::upper_bound(stages.begin(), stages.end(), layer,
                             [](std::uint64_t l, const Range& s) { return l < s.end; });
  if (it == stages.end()) return static_cast<std::uint32_t>(stages.size() - 1);
  return static_cast<std::uint32_t>(it - stages.begin());
}

void PlaceStages(const MeshInput& in, const std::vector<Range>& stages,
                 std::vector<MeshTensor>& out) {
  const PipelineSpec spec = in.plan != nullptr && in.plan->pipeline ? *in.plan->pipeline
                                                                     : DefaultPipeline();
  const bool tie = in.model == nullptr || in.model->tie_word_embeddings;
  const bool tied_embedding = tie && !in.has_lm_head;
  const auto last = static_cast<std::uint32_t>(stages.size() - 1);
  for (std::size_t i = 0; i < in.tensors.size(); ++i) {
    const StagePlace place = PlaceTensor(spec, in.tensors[i]->name, tied_embedding);
    MeshTensor& t = out[i];
    switch (place.kind) {
      case StagePlace::Kind::kLayer:
        t.layer = place.layer;
        t.stage = t.also = StageOfLayer(stages, place.layer);
        break;
      case StagePlace::Kind::kFirst: t.stage = t.also = 0; break;
      case StagePlace::Kind::kLast: t.stage = t.also = last; break;
      case StagePlace::Kind::kFirstAndLast:
        t.stage = 0;
        t.also = last;
        break;
    }
  }
}

// Tensor I's expert and owner, when its rule captures `{expert}`.
Status PlaceExpert(const MeshInput& in, const Mesh& mesh, std::size_t i, MeshTensor& t) {
  const RuleMatch& m = in.matches[i].match;
  if (m.rule == nullptr || !m.expert || m.rule->style == Style::kSkip) return {};
  const Rule& rule = *m.rule;
  const std::string& name = in.tensors[i]->name;
  std::optional<std::uint64_t> count =
      rule.style == Style::kExperts ? std::optional<std::uint64_t>(rule.num_experts)
      : in.model != nullptr         ? in.model->num_experts
                                    : std::nullopt;
  if (!count) {
    return Invalid(PlanPath(in), name,
                   fmt::format("{}: --ep needs the number of experts E: the rule has no "
                               "num_experts and {} has no n_routed_experts, "
                               "num_local_experts or num_experts", rule.label,
                               in.model != nullptr ? ConfigPath(in) : "no config.json"));
  }
  if (*m.expert >= *count) {
    return MakeError(ErrorCode::kTpShapeMismatch, PlanPath(in), name,
                     fmt::format("{}: expert {} is out of range for E = {} experts",
                                 rule.label, *m.expert, *count));
  }
  t.expert = m.expert;
  t.ep_owner = ExpertOwner(mesh.ep_placement, *m.expert, *count, mesh.ep_size());
  return {};
}

// The label of an expert tensor loaded whole on its owner.
std::string ExpertLabel(const TensorMatch& match, const MeshTensor& t, const Mesh& mesh) {
  return fmt::format("{}; --ep: expert {} on ep rank {} of {}", match.match.rule->label,
                     *t.expert, *t.ep_owner, mesh.ep_size());
}

}  // namespace

Result<MeshPlan> MeshPlan::Make(const MeshInput& in) {
  auto mesh = ResolveMesh(in.layout, in.world);
  if (!mesh) return std::move(mesh).error();
  if (Status s = CheckPlanForMesh(in, *mesh); !s) return s.error();
  MeshPlan out;
  out.mesh_ = std::move(*mesh);
  out.has_plan_ = in.plan != nullptr;
  out.num_layers_ = LayerCount(in);
  if (in.model != nullptr) out.num_experts_ = in.model->num_experts;
  out.tensors_.resize(in.tensors.size());
  if (out.mesh_.pp > 1) {
    if (!out.num_layers_) {
      return Invalid(ConfigPath(in), "",
                     fmt::format("PP = {} needs the model's layer count L: no num_layers in "
                                 "the plan and no num_hidden_layers in {}", out.mesh_.pp,
                                 in.model != nullptr ? "config.json" : "a config.json (none found)"));
    }
    auto stages = StageLayers(out.mesh_, *out.num_layers_);
    if (!stages) return std::move(stages).error();
    out.stages_ = std::move(*stages);
    PlaceStages(in, out.stages_, out.tensors_);
  }
  if (!out.mesh_.ep) return out;
  for (std::size_t i = 0; i < in.tensors.size(); ++i) {
    if (Status s = PlaceExpert(in, out.mesh_, i, out.tensors_[i]); !s) return s.error();
  }
  return out;
}

std::optional<Range> MeshPlan::Layers(unsigned pp_rank) const {
  if (stages_.empty()) return std::nullopt;
  return stages_[pp_rank];
}

TensorPart MeshPlan::PartOf(std::size_t i, unsigned rank) const {
  const MeshCoords c = Coords(rank);
  if (!OnStage(i, c.pp_rank)) return {};
  const MeshTensor& t = tensors_[i];
  if (t.ep_owner) {
    if (*t.ep_owner != *c.ep_rank) return {};
    return {PartKind::kWhole, 0, 1};
  }
  if (!has_plan_) return {PartKind::kWhole, 0, 1};
  return {PartKind::kSlice, c.tp_rank, mesh_.tp};
}

std::vector<std::vector<unsigned>> MeshPlan::Parts() const {
  std::vector<std::vector<unsigned>> out;
  if (mesh_.ep) {  // ep_rank = dp * TP + tp: every rank of a stage is its own part
    for (unsigned r = 0; r < mesh_.world; ++r) out.push_back({r});
    return out;
  }
  for (unsigned pp = 0; pp < mesh_.pp; ++pp) {
    for (unsigned tp = 0; tp < mesh_.tp; ++tp) {
      std::vector<unsigned> ranks;
      for (unsigned dp = 0; dp < mesh_.dp; ++dp) ranks.push_back(WorldRank(mesh_, tp, dp, pp));
      out.push_back(std::move(ranks));
    }
  }
  return out;
}

Result<std::vector<RankSlice>> SliceRank(const MeshPlan& mesh, const Plan* plan,
                                         std::span<const TensorInfo* const> tensors,
                                         std::span<const TensorMatch> matches, unsigned rank,
                                         bool validate, const FindTensor& find) {
  std::vector<RankSlice> out;
  const unsigned tp = mesh.mesh().tp;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorPart part = mesh.PartOf(i, rank);
    const TensorInfo& t = *tensors[i];
    if (part.kind == PartKind::kWhole) {
      const MeshTensor& mt = mesh.tensors()[i];
      std::string label = mt.ep_owner ? ExpertLabel(matches[i], mt, mesh.mesh()) : "";
      out.push_back({i, WholeSlice(t, std::move(label))});
      continue;
    }
    const bool slice = part.kind == PartKind::kSlice;
    if (plan == nullptr || (!slice && (!validate || mesh.tensors()[i].ep_owner))) continue;
    auto s = SliceFor(*plan, t, matches[i], slice ? part.tp_rank : 0, tp, find);
    if (!s) return std::move(s).error();
    if (slice && s->load) out.push_back({i, std::move(*s)});
  }
  return out;
}

}  // namespace shardload::tp
