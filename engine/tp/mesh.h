// A job is a mesh (layout.h): for each tensor of a checkpoint and each world
// rank, whether the rank loads it, and how: whole (an expert on its owner
// under expert parallelism), or its tensor-parallel slice for (tp_rank, TP),
// which the splitter (splitter.h) cuts. Pure computation, no I/O.
// Thread-safe after Make: a MeshPlan is an immutable value.
//
// A rank loads a tensor when its pipeline stage holds the tensor
// (pipeline.h), and then:
//   - with ep, an expert tensor (its rule captures `{expert}`; quantized
//     companions match under their weight's name, so they follow it) whole
//     when its ep rank owns the expert (layout.h EXPERTS), else not at all;
//   - without a plan (TP 1), whole;
//   - otherwise its tensor-parallel slice (tp_rank of TP) by the plan's rule.
// Make is O(tensors) and decides everything that does not depend on the
// rank (stages, expert owners) once; PartOf is O(1), SliceRank O(tensors):
// planning every rank of a job takes one Make.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "tp/layout.h"
#include "tp/pipeline.h"
#include "tp/splitter.h"
#include "tp/tp_plan.h"

namespace shardload::tp {

struct MeshInput {
  const Plan* plan = nullptr;         // nullptr: no plan (every tensor whole; TP 1)
  const ModelInfo* model = nullptr;   // config.json's facts; nullptr: none known
  Layout layout;
  unsigned world = 1;
  std::span<const TensorInfo* const> tensors;  // the tensors to place (a selection)
  std::span<const TensorMatch> matches;        // MatchTensor of each; empty without a plan
  bool has_lm_head = false;  // the checkpoint (not only the selection) has an lm_head tensor
};

// One tensor's place in the job, the same for every rank.
struct MeshTensor {
  std::uint32_t stage = 0;                 // the pipeline stage holding it
  std::uint32_t also = 0;                  // a second stage (tied embedding); == stage: none
  std::optional<std::uint64_t> layer;      // its `{layer}` capture
  std::optional<std::uint64_t> expert;     // with ep: its expert
  std::optional<std::uint32_t> ep_owner;   // with ep: the ep rank owning it
};

enum class PartKind : std::uint8_t {
  kNone,   // not on this rank
  kWhole,  // the whole tensor
  kSlice,  // the plan's slice for (tp_rank, tp)
};

struct TensorPart {
  PartKind kind = PartKind::kNone;
  unsigned tp_rank = 0;
  unsigned tp = 1;
};

class MeshPlan {
 public:
  // Errors (kInvalidArgument unless said, naming the numbers): ResolveMesh's
  // and StageLayers'; TP > 1 without a plan; PP > 1 without a layer count
  // (plan num_layers, config.json num_hidden_layers); ep without a rule
  // capturing `{expert}`, or an expert tensor whose expert count is unknown;
  // kTpShapeMismatch for an expert index past the count.
  static Result<MeshPlan> Make(const MeshInput& in);

  const Mesh& mesh() const { return mesh_; }
  MeshCoords Coords(unsigned rank) const { return CoordsOf(mesh_, rank); }
  // The layers [first, end) of stage PP_RANK; nullopt without pipeline
  // stages (PP 1). REQUIRES: pp_rank < mesh().pp.
  std::optional<Range> Layers(unsigned pp_rank) const;
  std::optional<std::uint64_t> num_layers() const { return num_layers_; }
  std::optional<std::uint64_t> num_experts() const { return num_experts_; }

  // Per tensor of MeshInput::tensors, in order.
  const std::vector<MeshTensor>& tensors() const { return tensors_; }
  bool OnStage(std::size_t i, unsigned pp_rank) const {
    return tensors_[i].stage == pp_rank || tensors_[i].also == pp_rank;
  }
  // REQUIRES: i < tensors().size(), rank < mesh().world.
  TensorPart PartOf(std::size_t i, unsigned rank) const;

  // The world ranks grouped by the part they load (its (pp, tp[, ep])
  // coordinates: DP replicas share one), each group ascending, groups by
  // their lowest rank.
  std::vector<std::vector<unsigned>> Parts() const;

 private:
  Mesh mesh_;
  bool has_plan_ = false;
  std::optional<std::uint64_t> num_layers_;
  std::optional<std::uint64_t> num_experts_;  // config.json's (rules may say their own)
  std::vector<Range> stages_;                 // PP > 1 only
  std::vector<MeshTensor> tensors_;
};

// One tensor a rank loads: its index in the tensors given and its slice.
struct RankSlice {
  std::size_t index = 0;
  LocalSlice slice;
};

// Rank RANK's tensors of TENSORS (MESH's, with MATCHES; PLAN as given to
// Make), in order. With VALIDATE, every tensor some rank slices and RANK
// does not is also sliced once (at tp rank 0) and thrown away, so that the
// plan is refused before any I/O for every rank alike (splitter errors never
// depend on the rank). FIND as for SliceFor.
Result<std::vector<RankSlice>> SliceRank(const MeshPlan& mesh, const Plan* plan,
                                         std::span<const TensorInfo* const> tensors,
                                         std::span<const TensorMatch> matches, unsigned rank,
                                         bool validate, const FindTensor& find);

}  // namespace shardload::tp
