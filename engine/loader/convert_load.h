// The conversion room of the loader (LoadRequest::dtype): each tensor's
// converted dtype, size and place in memory, its read segments turned into
// ConvertSegments aimed at that memory, and the converted read itself:
// alone through ReadConverted's bounded staging (convert/), or, for a
// cooperative load, converted while copied out of the node's staging
// (ConvertingSink, through coop_load.h). An item is a whole tensor (an
// identity slice) or one rank's slice of it (loader/load_items.h).
// Thread-safe: pure functions; ReadConvertedItems and a ConvertingSink are
// driven by one thread (ReadConverted uses threads of its own).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "buffers/fault_in_policy.h"
#include "convert/converting_read.h"
#include "coop/session.h"
#include "io/file_table.h"
#include "loader/coop_load.h"
#include "loader/read_runtime.h"
#include "loader/load_items.h"
#include "plan/read_op.h"

namespace shardload {

struct ConvertedLayout {
  std::vector<DType> dtype;              // per item, after conversion
  std::vector<std::uint64_t> size;       // per item, bytes after conversion
  std::vector<std::uint64_t> position;   // per item, offset in the memory (64-aligned)
  std::uint64_t total = 0;
};

ConvertedLayout LayOutConverted(std::span<const LoadItem> items, DType target);

// `segments` place item `tag`'s bytes relative to `origin` (the item's first
// unconverted byte); the result places them in converted memory at `base`.
std::vector<ConvertSegment> TranslateSegments(std::span<const Segment> segments,
                                              const std::byte* origin,
                                              std::span<const LoadItem> items,
                                              const ConvertedLayout& layout, std::byte* base);

// The first of SEGMENTS (tag: an index into ITEMS) that does not start and
// end on element boundaries of its item's dtype in the file, or null: when
// null, runs cut anywhere on the staging's alignment grid hold whole
// elements.
const Segment* FirstUnaligned(std::span<const Segment> segments, std::span<const LoadItem> items);

// A cooperative converted load's copies out of staging: each batch of runs
// (dst: item `tag`'s bytes from ORIGIN, as for TranslateSegments) converted
// into LAYOUT's memory at BASE, BEFORE_WRITE called on each destination
// range first. REQUIRES: FirstUnaligned(segments) is null.
class ConvertingSink final : public coop::CopySink {
 public:
  ConvertingSink(std::span<const LoadItem> items, const ConvertedLayout& layout, std::byte* base,
                 const std::byte* origin, std::function<void(std::byte*, std::size_t)> before_write)
      : items_(items), layout_(layout), base_(base), origin_(origin),
        before_write_(std::move(before_write)) {}
  Status Attach(std::byte*, std::size_t) override { return {}; }
  Status Copy(const coop::CopyRuns& runs) override;
  Status Flush() override { return {}; }
  void Detach() override {}
  bool drops_pages() const override { return true; }

 private:
  std::span<const LoadItem> items_;
  const ConvertedLayout& layout_;
  std::byte* base_;
  const std::byte* origin_;
  std::function<void(std::byte*, std::size_t)> before_write_;
};

// A converted read: ITEMS into LAYOUT's memory at BASE.
struct ConvertJob {
  std::span<const LoadItem> items;
  const ConvertedLayout* layout = nullptr;
  std::byte* base = nullptr;
  FileTable* files = nullptr;        // the items' shards, opened buffered
  const Checkpoint* checkpoint = nullptr;
  unsigned threads = 1;
  std::uint64_t chunk_size = 4ULL << 20;
  FaultInPolicy* fault_in = nullptr;  // the memory's, told before each write
  ProgressFn progress;                // counts converted bytes written
  const CoopContext* coop = nullptr;  // null: alone
};

// Reads and converts JOB's items. Alone: preads through a bounded staging
// buffer per worker; cooperatively: through the node's staging, refused
// (kUnsupported, naming the file, tensor and offset) for a tensor whose
// bytes do not start on an element boundary of its file.
Result<LoadStats> ReadConvertedItems(const ConvertJob& job);

}  // namespace shardload
