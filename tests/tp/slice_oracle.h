// An independent slicer for the splitter's property tests: unit lists
// dealt like torch.chunk and numpy.array_split, and index arithmetic over
// row-major arrays (never byte segments). It says which source element each
// local element of each rank holds, or which refusal a case must get.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "shardload/checkpoint.h"
#include "tp/tp_plan.h"

namespace shardload::tp::test {

using Bytes = std::vector<std::uint8_t>;
using Shape = std::vector<std::uint64_t>;

// One rule and tensor, with everything the oracle needs.
struct Case {
  TensorInfo tensor;
  Style style = Style::kCol;
  std::optional<std::int64_t> dim;
  std::uint64_t unit = 1;
  std::vector<std::uint64_t> block_sizes;  // explicit sizes, or empty
  std::uint64_t block_k = 1;               // equal blocks when no sizes
  std::vector<bool> rwf = {false};
  Uneven uneven = Uneven::kChunk;
  std::uint64_t pad_to = 1;
  std::uint64_t num_experts = 0;
  Placement placement = Placement::kLinear;
};

// What the oracle expects of one (case, world).
struct Expected {
  std::optional<ErrorCode> refused;
  int d = -1;                                      // -1: every rank the whole
  std::vector<std::vector<std::int64_t>> map;      // [rank][local idx] -> src, -1 zero
  std::vector<std::vector<std::uint64_t>> block_len;  // [rank][block]
  bool rwf_used = false;
};

// The expectation for CASE over W ranks.
Expected Oracle(const Case& c, unsigned w);

// The units of U that rank R of W gets, as a list (torch.chunk, or
// numpy.array_split for kBalanced).
std::vector<std::uint64_t> Deal(Uneven rule, std::uint64_t u, unsigned w, unsigned r);

// The dimension a col/row CASE splits; nullopt: replicated. Not range-checked.
std::optional<std::size_t> OracleDim(const Case& c);

// Row-major index arithmetic.
std::vector<std::uint64_t> Unravel(std::uint64_t flat, const Shape& shape);
std::uint64_t Ravel(const std::vector<std::uint64_t>& idx, const Shape& shape);
std::uint64_t NumElements(const Shape& shape);

// The BITS-bit element at INDEX of BUF (bit k of an element is bit
// (index*bits + k) of the buffer, LSB first in each byte).
std::uint64_t Element(const Bytes& buf, std::uint64_t index, unsigned bits);

}  // namespace shardload::tp::test
