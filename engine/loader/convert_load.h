// The arithmetic of a converted load (LoadOptions::dtype): each tensor's
// converted dtype, size and place in memory, and its read segments turned
// into ConvertSegments aimed at that memory. An item is a whole tensor (an
// identity slice) or one rank's slice of it (loader/tp_load.h).
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "convert/converting_read.h"
#include "loader/tp_load.h"
#include "plan/read_op.h"

namespace shardload {

struct ConvertedLayout {
  std::vector<DType> dtype;              // per item, after conversion
  std::vector<std::uint64_t> size;       // per item, bytes after conversion
  std::vector<std::uint64_t> position;   // per item, offset in the memory (64-aligned)
  std::uint64_t total = 0;
};

ConvertedLayout LayOutConverted(std::span<const TpItem> items, DType target);

// `segments` place item `tag`'s bytes relative to `origin` (the item's first
// unconverted byte); the result places them in converted memory at `base`.
std::vector<ConvertSegment> TranslateSegments(std::span<const Segment> segments,
                                              const std::byte* origin,
                                              std::span<const TpItem> items,
                                              const ConvertedLayout& layout, std::byte* base);

}  // namespace shardload
