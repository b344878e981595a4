// A job's layout over its parallel dimensions: world W = PP x DP x TP, rank
// order TP fastest, then DP, then PP outermost (Megatron-LM's and
// torchtitan's default): rank = (pp * DP + dp) * TP + tp. Expert parallelism
// deals whole experts over the TP x DP ranks of a stage, ep_rank = dp * TP +
// tp. Pipeline stages hold consecutive layers, counted by vLLM's rule or
// given. Pure integer arithmetic; no I/O.
// Thread-safe: pure functions over values.
//
// STAGES. L layers over P stages, vLLM's rule: each stage gets L / P, and the
// L % P remaining layers go one each to stages P-2, P-3, ... (from the
// second-to-last backwards). L = 61, P = 8:
//
//   stage    0   1   2   3   4   5   6   7
//   layers   7   7   8   8   8   8   8   7     [0,7) [7,14) [14,22) ... [54,61)
//
// EXPERTS. E experts over EP ranks: linear (default) gives expert e to ep rank
// e * EP / E (integer division), round_robin to e % EP. E = 10, EP = 4:
//
//   expert       0 1 2 3 4 5 6 7 8 9
//   linear       0 0 0 1 1 2 2 2 3 3
//   round_robin  0 1 2 3 0 1 2 3 0 1
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "shardload/error.h"
#include "tp/ranges.h"
#include "tp/tp_plan.h"

namespace shardload::tp {

// What a job gives (0 / empty: not given).
struct Layout {
  unsigned tp = 0;                        // Default: W / pp
  unsigned pp = 0;                        // Default: pp_layers.size(), else 1
  std::vector<std::uint64_t> pp_layers = {};  // layers per stage; empty: vLLM's rule
  bool ep = false;                        // experts whole over the TP x DP ranks
  Placement ep_placement = Placement::kLinear;
};

// A layout resolved for a world size.
struct Mesh {
  unsigned world = 1;
  unsigned tp = 1;
  unsigned pp = 1;
  unsigned dp = 1;
  bool ep = false;
  Placement ep_placement = Placement::kLinear;
  std::vector<std::uint64_t> pp_layers;   // as given (checked against L later)

  unsigned ep_size() const { return tp * dp; }
};

// Where one world rank sits in the mesh.
struct MeshCoords {
  unsigned rank = 0;
  unsigned tp_rank = 0;
  unsigned dp_rank = 0;
  unsigned pp_rank = 0;
  std::optional<unsigned> ep_rank;        // nullopt without ep
};

// LAYOUT for WORLD ranks. Errors (kInvalidArgument, naming the numbers):
// world 0; tp or pp that do not divide W (or W not TP x PP x DP); pp_layers
// whose count differs from pp.
Result<Mesh> ResolveMesh(const Layout& layout, unsigned world);

// REQUIRES: rank < mesh.world.
MeshCoords CoordsOf(const Mesh& mesh, unsigned rank);

// (pp * DP + dp) * TP + tp. REQUIRES: each below its size.
unsigned WorldRank(const Mesh& mesh, unsigned tp_rank, unsigned dp_rank, unsigned pp_rank);

// The layers [first, end) of each of MESH's stages for a model of LAYERS
// layers: mesh.pp_layers when given, else vLLM's rule. Errors
// (kInvalidArgument, naming the numbers): more stages than layers; given
// counts that do not sum to LAYERS, or a stage given no layer.
Result<std::vector<Range>> StageLayers(const Mesh& mesh, std::uint64_t layers);

// The ep rank owning expert E of NUM_EXPERTS over EP ranks: e * EP / E
// (linear) or e % EP (round_robin). REQUIRES: e < num_experts, ep > 0.
unsigned ExpertOwner(Placement placement, std::uint64_t e, std::uint64_t num_experts,
                     unsigned ep);

}  // namespace shardload::tp
