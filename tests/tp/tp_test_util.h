// Helpers of the tensor-parallel tests: hand-built TensorInfo values, plans
// that must parse, slices that must succeed, and applying a slice's byte
// segments to a source buffer the way a loader would.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shardload/checkpoint.h"
#include "tp/splitter.h"
#include "tp/tp_plan.h"

namespace shardload::tp::test {

// A tensor at offset 0 of shard 0 whose size matches dtype and shape.
TensorInfo MakeTensor(std::string name, DType dtype, std::vector<std::uint64_t> shape);

// REQUIREs that JSON parses.
Plan MustParse(std::string_view json);
// REQUIREs that the slice succeeds.
LocalSlice MustSlice(const Plan& plan, const TensorInfo& tensor, unsigned rank,
                     unsigned world);

// Copies SRC through SLICE's segments into a fresh buffer of slice.size
// bytes (zeros when zero_fill, else 0xA5); COVER (if given) counts the
// writes to each local byte. REQUIREs every run to stay inside both buffers.
std::vector<std::uint8_t> Apply(const LocalSlice& slice,
                                const std::vector<std::uint8_t>& src,
                                std::vector<int>* cover = nullptr);

// The index ranges [begin, end) of the split dimension that SLICE reads, in
// local order, from its segments. REQUIRES: a split slice whose segments
// are one per piece (not the whole-dimension contiguous form).
std::vector<std::pair<std::uint64_t, std::uint64_t>> IndexRanges(
    const LocalSlice& slice, const TensorInfo& tensor);

// Every byte range [begin, end) of the source that SLICE reads, runs
// expanded, in segment order. For small counts only.
std::vector<std::pair<std::uint64_t, std::uint64_t>> ByteRanges(const LocalSlice& slice);

}  // namespace shardload::tp::test
