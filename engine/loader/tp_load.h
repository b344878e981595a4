// What every load is made of, plain or tensor-parallel: a plain load is
// rank 0 of world 1 under the identity plan (each tensor one contiguous
// segment). This file resolves a PlanSource into a parsed plan, slices the
// selected tensors for one rank (tp/splitter.h), lays the local tensors out
// in library-owned memory, turns each slice into strided read-planner
// Segments straight into its destination, and zeroes what no segment covers
// (vocab padding).
//
// Reads never cover gaps between a slice's runs here: merging nearby runs is
// the read planner's choice (docs/tp-plan.md, "Read amplification").
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

// Plan files and config.json files larger than this are refused (kTpPlanJson).
inline constexpr std::uint64_t kMaxPlanFileSize = 64ULL << 20;

// One rank of one world under one parsed plan; plan == nullptr is the
// identity (a plain load: world 1, every tensor whole).
struct TpContext {
  std::shared_ptr<const tp::Plan> plan;
  unsigned rank = 0;
  unsigned world = 1;
};

// The config.json that PlanSource::Hf() reads for CHECKPOINT: beside its
// index, else beside its first shard.
std::string HfConfigPath(const Checkpoint& checkpoint);

// Reads (index::ReadSmallFile) and parses the plan SOURCE names; kNone is
// the identity (nullptr). Errors: kIoError / kNotRegularFile for
// the file, the parsers' kTpPlanJson, kTpBadPattern, kTpBadRule.
Result<std::shared_ptr<const tp::Plan>> LoadPlan(const Checkpoint& checkpoint,
                                                 const PlanSource& source);

// kInvalidArgument unless 0 <= rank < world, and world 1 when there is no plan.
Status CheckRank(const PlanSource& source, unsigned rank, unsigned world);

// One tensor a rank loads.
struct TpItem {
  const TensorInfo* source = nullptr;
  tp::LocalSlice slice;  // slice.load is true
};

// CONTEXT's slice of TENSOR (the whole tensor under the identity); FIND
// looks up the weights quantized companions follow.
Result<tp::LocalSlice> SliceOne(const TpContext& context, const TensorInfo& tensor,
                                const tp::FindTensor& find);

// Slices every tensor of SELECTED, in order, and keeps those the rank loads.
// Since splitter errors never depend on the rank, this also validates the
// plan against the whole selection for every rank, before any I/O.
Result<std::vector<TpItem>> SliceSelected(const TpContext& context,
                                          const Checkpoint& checkpoint,
                                          std::span<const TensorInfo* const> selected,
                                          std::span<const tp::TensorMatch> matches = {});

// Each selected tensor's rule match (empty under the identity), made once
// for SliceSelected to slice several ranks with (MATCHES).
Result<std::vector<tp::TensorMatch>> MatchSelected(const TpContext& context,
                                                   std::span<const TensorInfo* const> selected);

// tp::SliceFor's lookup of the weights quantized companions follow, in
// CHECKPOINT.
tp::FindTensor FindIn(const Checkpoint& checkpoint);

// Where each local tensor goes in library-owned memory. A tensor received
// whole is laid out by LayOutArena (mirroring the file, so neighbours in a
// shard stay neighbours in memory and their reads coalesce); any other slice
// gets a region of its own on the alignment grid, placed at the offset its
// first file byte has modulo the alignment, so that an O_DIRECT read of a
// contiguous slice can land in place.
struct LoadLayout {
  std::uint64_t size = 0;
  std::vector<std::uint64_t> position;       // per item
  std::vector<ArenaLayout::Region> regions;  // memory reads may overwrite
};
LoadLayout LayOut(std::span<const TpItem> items, std::uint64_t alignment);

// Appends ITEM's runs as strided Segments (one per tp::Segment) into DST
// (the local tensor's first byte), tagged TAG.
void AppendTpSegments(const TpItem& item, std::byte* dst, std::uint32_t tag,
                      std::vector<Segment>& out);

// Sets the bytes of the local tensor at DST that no segment covers to zero
// (only when slice.zero_fill).
void ZeroPadding(const tp::LocalSlice& slice, std::byte* dst);

// The PlannedTensor that describes ITEM (read totals left zero).
PlannedTensor DescribeTp(const TpItem& item);

}  // namespace shardload
