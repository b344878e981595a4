// Unit-range arithmetic of the tensor-parallel splitter (see ranges.h).
// Thread-safe: pure functions.
#include "tp/ranges.h"

#include <algorithm>
#include <cassert>

namespace shardload::tp {

Range UnitRange(Uneven rule, std::uint64_t units, unsigned r, unsigned w) {
  assert(r < w);
  switch (rule) {
    case Uneven::kChunk: {
      std::uint64_t c = units / w + (units % w != 0 ? 1 : 0);
      // r * c <= units + w - 1 could still overflow near 2^64: saturate.
      std::uint64_t begin = (r != 0 && c > units / r) ? units : std::min(r * c, units);
      return {begin, begin + std::min(c, units - begin)};
    }
    case Uneven::kBalanced: {
      std::uint64_t b = units / w, m = units % w;
      std::uint64_t begin = r * b + std::min<std::uint64_t>(r, m);
      return {begin, begin + b + (r < m ? 1 : 0)};
    }
    case Uneven::kExact: {
      assert(units % w == 0);
      std::uint64_t per = units / w;
      return {r * per, (r + 1) * per};
    }
  }
  return {};
}

std::uint64_t ReplicatedUnit(std::uint64_t units, unsigned r, unsigned w) {
  assert(units > 0 && units < w && w % units == 0);
  return r / (w / units);
}

bool OwnsExpert(Placement placement, Uneven rule, std::uint64_t e,
                std::uint64_t num_experts, unsigned r, unsigned w) {
  assert(e < num_experts);
  if (placement == Placement::kRoundRobin) return e % w == r;
  Range owned = UnitRange(rule, num_experts, r, w);
  return owned.begin <= e && e < owned.end;
}

}  // namespace shardload::tp
