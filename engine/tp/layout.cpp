// A job's layout: mesh coordinates, pipeline stages and expert owners (see
// layout.h).
// Thread-safe: pure functions.
#include "tp/layout.h"

#include <cassert>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/checked.h"

namespace shardload::tp {
namespace {

Error LayoutError(std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, {}, {}, std::move(detail));
}

// TP and PP from what was given.
Result<std::pair<unsigned, unsigned>> Sizes(const Layout& layout, unsigned world) {
  unsigned pp = layout.pp != 0 ? layout.pp : static_cast<unsigned>(layout.pp_layers.size());
  if (pp == 0) pp = 1;
  if (!layout.pp_layers.empty() && layout.pp_layers.size() != pp) {
    return LayoutError(fmt::format("--pp-layers gives {} stage(s) ({}) but --pp is {}",
                                   layout.pp_layers.size(), fmt::join(layout.pp_layers, ","),
                                   pp));
  }
  if (layout.tp != 0) return std::make_pair(layout.tp, pp);
  if (world % pp != 0) {
    return LayoutError(fmt::format("world size W = {} is not divisible by PP = {} "
                                   "(TP = W / PP when --tp is not given)", world, pp));
  }
  return std::make_pair(world / pp, pp);
}

}  // namespace

Result<Mesh> ResolveMesh(const Layout& layout, unsigned world) {
  if (world == 0) return LayoutError("world size W = 0: a job has at least one rank");
  auto sizes = Sizes(layout, world);
  if (!sizes) return std::move(sizes).error();
  const auto [tp, pp] = *sizes;
  const std::uint64_t group = std::uint64_t{tp} * pp;
  if (world % group != 0) {
    return LayoutError(fmt::format("world size W = {} is not divisible by TP x PP = {} x {} "
                                   "= {}", world, tp, pp, group));
  }
  Mesh mesh;
  mesh.world = world;
  mesh.tp = tp;
  mesh.pp = pp;
  mesh.dp = static_cast<unsigned>(world / group);
  mesh.ep = layout.ep;
  mesh.ep_placement = layout.ep_placement;
  mesh.pp_layers = layout.pp_layers;
  return mesh;
}

MeshCoords CoordsOf(const Mesh& mesh, unsigned rank) {
  assert(rank < mesh.world);
  MeshCoords c;
  c.rank = rank;
  c.tp_rank = rank % mesh.tp;
  c.dp_rank = rank / mesh.tp % mesh.dp;
  c.pp_rank = rank / (mesh.tp * mesh.dp);
  if (mesh.ep) c.ep_rank = c.dp_rank * mesh.tp + c.tp_rank;
  return c;
}

unsigned WorldRank(const Mesh& mesh, unsigned tp_rank, unsigned dp_rank, unsigned pp_rank) {
  return (pp_rank * mesh.dp + dp_rank) * mesh.tp + tp_rank;
}

Result<std::vector<Range>> StageLayers(const Mesh& mesh, std::uint64_t layers) {
  const unsigned p = mesh.pp;
  if (p > layers) {
    return LayoutError(fmt::format("PP = {} pipeline stages but the model has {} layer(s): "
                                   "more stages than layers", p, layers));
  }
  std::vector<std::uint64_t> counts = mesh.pp_layers;
  if (counts.empty()) {
    counts.assign(p, layers / p);
    const std::uint64_t rest = layers % p;
    for (std::uint64_t i = 2; i < rest + 2; ++i) ++counts[p - i];  // stages P-2, P-3, ...
  }
  std::optional<std::uint64_t> sum = 0;
  bool empty_stage = false;
  for (std::uint64_t n : counts) {
    if (sum) sum = CheckedAdd(*sum, n);
    empty_stage = empty_stage || n == 0;
  }
  if (!sum || *sum != layers || empty_stage) {
    return LayoutError(fmt::format("--pp-layers {} must give each of the {} stages at least "
                                   "one layer and sum to the model's {} layers (they sum to "
                                   "{})", fmt::join(counts, ","), p, layers,
                                   sum ? fmt::format("{}", *sum) : "more than 2^64"));
  }
  std::vector<Range> out;
  std::uint64_t first = 0;
  for (std::uint64_t n : counts) {
    out.push_back({first, first + n});
    first += n;
  }
  return out;
}

unsigned ExpertOwner(Placement placement, std::uint64_t e, std::uint64_t num_experts,
                     unsigned ep) {
  assert(e < num_experts && ep > 0);
  if (placement == Placement::kRoundRobin) return static_cast<unsigned>(e % ep);
  // e * EP / E without overflow: e < E, so the quotient is below EP.
  __extension__ using Wide = unsigned __int128;
  return static_cast<unsigned>(static_cast<Wide>(e) * ep / num_experts);
}

}  // namespace shardload::tp
