// The tensor-parallel part of a load: resolves the plan a TensorParallel
// names, slices the selected tensors for one rank (tp/splitter.h), lays the
// local tensors out in library-owned memory, turns each slice's strided
// segments into strided read-planner Segments (one per tp::Segment, never
// one per row) aimed at their destination rows, and zeroes what no segment
// covers (vocab padding).
//
// Whether gaps between a slice's runs are read (staged covering reads) or
// not (exact runs) is the read planner's choice (ReadStrategy, CostModel,
// max_over_read; docs/tp-plan.md, "Read amplification").
// Thread-safe: pure functions over immutable inputs (ZeroPadding writes only
// the memory it is given).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "plan/arena_layout.h"
#include "plan/read_op.h"
#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "shardload/loader.h"
#include "tp/splitter.h"
#include "tp/tp_plan.h"

namespace shardload {

// A TensorParallel resolved against one checkpoint: the parsed plan.
struct TpContext {
  tp::Plan plan;
  unsigned rank = 0;
  unsigned world = 1;
};

// Reads the plan TP names: "hf" (the config.json beside the checkpoint's
// index, or beside its single shard), a path to a file whose name ends in
// "config.json" (a Hugging Face config), or our plan JSON. An empty plan
// with world 1 is the plan that replicates everything.
// Errors: kInvalidArgument (world 0, rank >= world, no plan with world > 1),
// kNotFound / kIoError for the file, the parsers' kTpPlanJson, ...
Result<TpContext> ResolveTp(const Checkpoint& checkpoint, const TensorParallel& tp);

// The config.json that `--plan hf` reads for CHECKPOINT.
std::string HfConfigPath(const Checkpoint& checkpoint);

// One tensor a rank loads.
struct TpItem {
  const TensorInfo* source = nullptr;
  tp::LocalSlice slice;  // slice.load is true
};

// One rank's tensors of a selection, with the context that sliced them.
struct TpSlices {
  std::shared_ptr<const TpContext> context;
  std::vector<TpItem> items;  // in selection order (sorted by name)
};

// tp::ValidatePlan over TENSORS: the plan is refused for every rank alike,
// before any I/O.
Status ValidateTp(const TpContext& context, std::span<const TensorInfo* const> tensors);

// Validates the plan against every tensor of SELECTED (ValidateTp), then
// slices each; tensors the rank does not load (skip, experts it does not
// own) are left out. Order is kept.
Result<std::vector<TpItem>> SliceSelected(const TpContext& context,
                                          std::span<const TensorInfo* const> selected);

// Where each local tensor goes in library-owned memory: each in a region of
// its own that starts and ends on the alignment grid, placed at the offset
// its first file byte has modulo the alignment, so that an O_DIRECT read of
// a contiguous slice can land in place.
struct TpLayout {
  std::uint64_t size = 0;
  std::vector<std::uint64_t> position;  // per item
  std::vector<ArenaLayout::Region> regions;  // one per non-empty item
};
TpLayout LayOutTp(std::span<const TpItem> items, std::uint64_t alignment);

// Appends ITEM's strided segments as Segments into DST (the local tensor's
// first byte), tagged TAG: one per tp::Segment.
void AppendTpSegments(const TpItem& item, std::byte* dst, std::uint32_t tag,
                      std::vector<Segment>& out);

// Sets the bytes of the local tensor at DST that no segment covers to zero
// (only when slice.zero_fill).
void ZeroPadding(const tp::LocalSlice& slice, std::byte* dst);

// The PlannedTensor that describes ITEM.
PlannedTensor DescribeTp(const TpItem& item);

}  // namespace shardload
