// What every load is made of, plain or tensor-parallel (a plain load is
// rank 0 of world 1 under the identity plan, each tensor one contiguous run):
// LoadItems. This file resolves a PlanSource into a parsed plan, slices the
// selected tensors for one rank (tp/splitter.h), lays the local tensors out
// in library-owned memory, places them, turns each slice into strided
// read-planner Segments straight into its destination (MakeSegments), opens
// the shards they come from, and zeroes what no segment covers (vocab
// padding).
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
#include <utility>
#include <vector>

#include "plan/arena_layout.h"
#include "plan/read_op.h"
#include "plan/read_planner.h"
#include "integrity/loaded_hash.h"
#include "io/file_table.h"
#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "shardload/options.h"
#include "tp/splitter.h"
#include "tp/tp_plan.h"

namespace shardload {

struct PlannedTensor;  // shardload/loader.h
struct RankPlan;       // shardload/loader.h

// Plan files and config.json files larger than this are refused (kTpPlanJson).
inline constexpr std::uint64_t kMaxPlanFileSize = 64ULL << 20;

// One rank of one world under one parsed plan; plan == nullptr is the
// identity (a plain load: world 1, every tensor whole).
struct LoadContext {
  std::shared_ptr<const tp::Plan> plan;
  unsigned rank = 0;
  unsigned world = 1;
};

// The text of the plan file (or config.json) at PATH, opened like an index
// file (ReadSmallFile). Errors: kIoError / kNotRegularFile,
// kTpPlanJson (larger than kMaxPlanFileSize).
Result<std::string> ReadPlanText(const std::string& path);

// The config.json that PlanSource::Hf() reads for CHECKPOINT: beside its
// index, else beside its first shard.
std::string HfConfigPath(const Checkpoint& checkpoint);

// Reads (ReadSmallFile) and parses the plan SOURCE names; kNone is
// the identity (nullptr). Errors: kIoError / kNotRegularFile for
// the file, the parsers' kTpPlanJson, kTpBadPattern, kTpBadRule.
Result<std::shared_ptr<const tp::Plan>> LoadPlan(const Checkpoint& checkpoint,
                                                 const PlanSource& source);

// The plans a Loader has read, by source (a few per Loader at most): each
// read and parsed on first use, then reused.
class PlanCache {
 public:
  // The context of rank tp.rank of tp.world under tp.plan. Errors:
  // CheckRank's, LoadPlan's.
  Result<LoadContext> Context(const Checkpoint& checkpoint, const TensorParallel& tp);

 private:
  std::vector<std::pair<PlanSource, std::shared_ptr<const tp::Plan>>> plans_;
};

// kInvalidArgument unless 0 <= rank < world, and world 1 when there is no plan.
Status CheckRank(const PlanSource& source, unsigned rank, unsigned world);

// One tensor a rank loads.
struct LoadItem {
  const TensorInfo* source = nullptr;
  tp::LocalSlice slice;  // slice.load is true
};

// CONTEXT's slice of TENSOR (the whole tensor under the identity); FIND
// looks up the weights quantized companions follow.
Result<tp::LocalSlice> SliceOne(const LoadContext& context, const TensorInfo& tensor,
                                const tp::FindTensor& find);

// Slices every tensor of SELECTED, in order, and keeps those the rank loads.
// Since splitter errors never depend on the rank, this also validates the
// plan against the whole selection for every rank, before any I/O.
Result<std::vector<LoadItem>> SliceSelected(const LoadContext& context,
                                          const Checkpoint& checkpoint,
                                          std::span<const TensorInfo* const> selected,
                                          std::span<const tp::TensorMatch> matches = {});

// Each selected tensor's rule match (empty under the identity), made once
// for SliceSelected to slice several ranks with (MATCHES).
Result<std::vector<tp::TensorMatch>> MatchSelected(const LoadContext& context,
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
LoadLayout LayOut(std::span<const LoadItem> items, std::uint64_t alignment);

// Appends ITEM's runs as strided Segments (one per tp::Run) into DST
// (the local tensor's first byte), tagged TAG.
void AppendItemSegments(const LoadItem& item, std::byte* dst, std::uint32_t tag,
                      std::vector<Segment>& out);

// Each item's strided segments into its destination DATA[i], tagged i.
std::vector<Segment> MakeSegments(std::span<const LoadItem> items,
                                  std::span<std::byte* const> data);

// Fake, never dereferenced, base address for planning reads without memory:
// aligned to any O_DIRECT alignment.
inline std::byte* const kPlanningBase = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);

// Each item's address from BASE under LAYOUT; appends the layout's regions
// (from BASE) to WINDOWS.
std::vector<std::byte*> Place(std::span<const LoadItem> items, const LoadLayout& layout,
                              std::byte* base, std::vector<Window>& windows);

// The tensor each item is sliced from.
std::vector<const TensorInfo*> Sources(std::span<const LoadItem> items);

// Opens the shards of CHECKPOINT holding TENSORS' bytes for MODE (for
// O_DIRECT, with their alignment); the others stay closed.
Result<FileTable> OpenShards(const Checkpoint& checkpoint,
                             std::span<const TensorInfo* const> tensors, IoMode mode);

// Sets the bytes of the local tensor at DST that no segment covers to zero
// (only when slice.zero_fill).
void ZeroPadding(const tp::LocalSlice& slice, std::byte* dst);

// What the verifier hashes each item from: its loaded bytes in DATA where
// the item is its whole tensor byte for byte as in the file (a plain load,
// or a replicated tensor), else nothing (its shard is read again; DATA
// empty: every one).
std::vector<LoadedBytes> HashSources(std::span<const LoadItem> items,
                                     std::span<std::byte* const> data);

// CONTEXT's RankPlan of ITEMS read by PLAN (tag = item index).
RankPlan DescribePlan(const LoadContext& context, std::span<const LoadItem> items,
                      const ReadPlan& plan);

// The PlannedTensor that describes ITEM (read totals left zero).
PlannedTensor DescribeItem(const LoadItem& item);

}  // namespace shardload
