// The arithmetic of a converted load (LoadOptions::dtype): each tensor's
// converted dtype, size and place in memory, and its read segments turned
// into ConvertSegments aimed at that memory.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "convert/converting_read.h"
#include "plan/read_op.h"
#include "shardload/checkpoint.h"

namespace shardload {

// One tensor of the load: whole, or one rank's slice of it.
struct ConvertItem {
  const TensorInfo* source = nullptr;
  std::vector<std::uint64_t> shape;  // local shape
  std::uint64_t local_size = 0;      // local bytes before conversion
};

struct ConvertedLayout {
  std::vector<DType> dtype;              // per item, after conversion
  std::vector<std::uint64_t> size;       // per item, bytes after conversion
  std::vector<std::uint64_t> position;   // per item, offset in the memory (64-aligned)
  std::uint64_t total = 0;
};

ConvertedLayout LayOutConverted(std::span<const ConvertItem> items, DType target);

// `segments` place item `tag`'s bytes relative to `origin` (the item's first
// unconverted byte); the result places them in converted memory at `base`.
std::vector<ConvertSegment> TranslateSegments(std::span<const Segment> segments,
                                              const std::byte* origin,
                                              std::span<const ConvertItem> items,
                                              const ConvertedLayout& layout, std::byte* base);

}  // namespace shardload
