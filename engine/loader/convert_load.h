// The arithmetic of a converted load (LoadOptions::dtype): each tensor's
// converted dtype, size and place in memory, and its read segments turned
// into ConvertSegments aimed at that memory; for a cooperative one, the
// copy out of the node's staging that converts (ConvertingSink). An item is
// a whole tensor (an identity slice) or one rank's slice of it
// (loader/tp_load.h).
// Thread-safe: pure functions; a ConvertingSink is driven by one thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <functional>

#include "convert/converting_read.h"
#include "coop/session.h"
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

// The first of SEGMENTS (tag: an index into ITEMS) that does not start and
// end on element boundaries of its item's dtype in the file, or null: when
// null, runs cut anywhere on the staging's alignment grid hold whole
// elements.
const Segment* FirstUnaligned(std::span<const Segment> segments, std::span<const TpItem> items);

// A cooperative converted load's copies out of staging: each batch of runs
// (dst: item `tag`'s bytes from ORIGIN, as for TranslateSegments) converted
// into LAYOUT's memory at BASE, BEFORE_WRITE called on each destination
// range first. REQUIRES: FirstUnaligned(segments) is null.
class ConvertingSink final : public coop::CopySink {
 public:
  ConvertingSink(std::span<const TpItem> items, const ConvertedLayout& layout, std::byte* base,
                 const std::byte* origin, std::function<void(std::byte*, std::size_t)> before_write)
      : items_(items), layout_(layout), base_(base), origin_(origin),
        before_write_(std::move(before_write)) {}
  Status Attach(std::byte*, std::size_t) override { return {}; }
  Status Copy(const coop::CopyRuns& runs) override;
  Status Flush() override { return {}; }
  void Detach() override {}
  bool drops_pages() const override { return true; }

 private:
  std::span<const TpItem> items_;
  const ConvertedLayout& layout_;
  std::byte* base_;
  const std::byte* origin_;
  std::function<void(std::byte*, std::size_t)> before_write_;
};

}  // namespace shardload
