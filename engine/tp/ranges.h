// Unit-range arithmetic of the tensor-parallel splitter: which of u units
// rank r of W gets under each Uneven rule, the unit a rank reads when a
// block has fewer units than ranks, and expert ownership. Pure integer
// arithmetic without errors: the splitter checks divisibility first.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>

#include "tp/tp_plan.h"

namespace shardload::tp {

// The half-open index range [begin, end).
struct Range {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::uint64_t size() const { return end - begin; }
};

// The units of UNITS that rank R of W gets:
//   kChunk:    c = ceil(u/W); [min(rc, u), min(rc + c, u))
//   kBalanced: b = u / W, m = u % W; s = rb + min(r, m); [s, s + b + (r < m))
//   kExact:    [ru/W, (r+1)u/W)
// REQUIRES: r < w; for kExact, units % w == 0.
Range UnitRange(Uneven rule, std::uint64_t units, unsigned r, unsigned w);

// The unit rank R reads from a block of UNITS < W units: r / (W / units),
// so W/units consecutive ranks share each unit (vLLM's KV-head replicas).
// REQUIRES: 0 < units < w, w % units == 0, r < w.
std::uint64_t ReplicatedUnit(std::uint64_t units, unsigned r, unsigned w);

// Whether rank R owns expert E of NUM_EXPERTS: kLinear deals contiguous
// ranges by RULE (kBalanced is vLLM's "linear"), kRoundRobin takes
// e mod W == r. REQUIRES: e < num_experts, r < w; for kExact,
// num_experts % w == 0.
bool OwnsExpert(Placement placement, Uneven rule, std::uint64_t e,
                std::uint64_t num_experts, unsigned r, unsigned w);

}  // namespace shardload::tp
