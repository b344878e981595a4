// The read planner: turns segments (strided shard byte patterns ->
// destination addresses) into ReadOps in (file, offset) order, cut into one
// share per worker. Planning time and memory are O(segments + bytes/chunk):
// a strided segment of any number of rows stays one description.
//
//   1. plain ranges (count == 1, or rows adjacent in file and memory):
//      sort by (file, offset), coalesce ranges adjacent in file and memory
//      and of the same mode (buffered / O_DIRECT):
//
//        file:  |--- s1 ---|--- s2 ---|    |--- s3 ---|
//        dst:   |--- s1 ---|--- s2 ---|  |--- s3 ---|      s1+s2 merge; s3 not
//
//   2. strided segments, per tag (a tensor), by strategy (ReadStrategy,
//      priced by the CostModel, capped by max_over_read):
//
//        file     |..##....|..##....|..##....|..##....|   4 runs of 2, stride 8
//        exact    one batch ReadOp: 4 reads of 2 bytes straight to the rows
//                 (O_DIRECT: 4 aligned reads into staging, each copied)
//        staged   reads of the covering range |..##....|..##....|..## in
//                 staging_chunk pieces on a fixed grid; each piece's runs
//                 (also runs a grid line cuts in two) are copied out
//        mixed    per segment, the cheaper of the two
//        mapped   buffered segments: the covering range mapped in map_window
//                 pieces on a fixed grid, runs copied out of each mapping
//                 (one ReadOp per window); O_DIRECT segments as mixed
//
//   3. O_DIRECT plain ranges: widen each range to the alignment grid. When
//      the destination sits at the same offset modulo the alignment as the
//      file (dst ≡ offset mod A) and the slack lies inside a Window and
//      outside every other destination, the widened read goes straight to
//      the destination; otherwise it goes through a staging buffer:
//
//        file:    A0       a=====================b        B1     (A-aligned)
//        direct:  [slack   |==== tensor bytes ===|  slack]  -> dst - (a - A0)
//        staged:  [A0 ......... read into staging ..... B1] -> copy a..b to dst
//
//   4. split into chunks of at most chunk_size (batches: at most chunk_size
//      bytes of runs per ReadOp, so work stealing still balances);
//   5. balance: cut the (file, offset)-ordered list into `workers` contiguous
//      shares of about equal bytes, so each worker reads each file
//      sequentially. The shares are where workers start; the scheduler
//      rebalances them while the load runs (io/op_queue.h).
//
// Thread-safe: a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "plan/read_op.h"
#include "shardload/read_strategy.h"
#include "shardload/error.h"

namespace shardload {

struct PlanOptions {
  // Largest read. Default: 4 MiB. Capped at kMaxReadLength.
  std::uint64_t chunk_size = 4ULL << 20;
  // Number of worker shares. Default: 1.
  unsigned workers = 1;
  // Read every segment with O_DIRECT (as if each had Segment::direct set).
  // Default: off (each segment's own flag decides).
  bool direct = false;
  // O_DIRECT alignment of offsets, lengths and memory (a power of two).
  // Default: 4096.
  std::uint64_t alignment = 4096;
  // Largest staged read (rounded up to the alignment). Default: 1 MiB.
  std::uint64_t staging_chunk = 1ULL << 20;
  // Largest window of a kMapped read (a worker populates one at a time; its
  // page-table entries take map_window / 512 bytes). Default: 32 MiB.
  std::uint64_t map_window = 32ULL << 20;
  // Strategy for strided segments; kAuto: the cost model decides per tag.
  ReadStrategy strategy = ReadStrategy::kAuto;
  // Per tag, bytes read / bytes received at most this (>= 1); 1 gives exact
  // reads. Exact reads are always allowed (O_DIRECT alignment may exceed it).
  // Default: 8.
  double max_over_read = 8.0;
  CostModel cost;
  // Memory that aligned reads may overwrite outside the segments. Default: none.
  std::span<const Window> windows;
};

// What the plan reads for one tag. A read spanning several tags (coalesced
// whole tensors) counts for the tag of its first byte.
struct TagReads {
  ReadStrategy strategy = ReadStrategy::kExact;  // kExact for plain ranges
  std::uint64_t bytes_read = 0;  // bytes read from storage (alignment, gaps included; mapped: bytes mapped)
  std::uint64_t read_ops = 0;    // read system calls / io_uring reads (pieces) / mappings
  std::uint64_t bytes = 0;       // bytes received (delivered) for this tag
};

struct ReadPlan {
  // Per Segment::tag (index = tag; tags no segment used stay zero).
  std::vector<TagReads> tags;
  std::vector<ReadOp> ops;  // in (file, offset) order
  // The segments staged reads scatter into (ReadOp::scatter_begin/count).
  std::vector<Segment> scatter;
  // Worker w's share is ops[bounds[w], bounds[w + 1]); options.workers + 1
  // entries, from 0 to ops.size().
  std::vector<std::size_t> bounds;
  std::uint64_t bytes_requested = 0;  // bytes of all reads (every piece)
  std::uint64_t bytes_delivered = 0;  // destination bytes filled
  std::uint64_t reads = 0;            // reads (pieces) of all ops
  std::uint64_t staging_size = 0;     // largest staged read; 0: none staged

  unsigned workers() const { return bounds.empty() ? 0 : static_cast<unsigned>(bounds.size() - 1); }
  std::span<const ReadOp> share(unsigned w) const {
    return std::span<const ReadOp>(ops).subspan(bounds[w], bounds[w + 1] - bounds[w]);
  }
};

// Plans the reads. Fails with kInvalidArgument on a null destination, a range
// that overflows, strides shorter than a run, plain destinations that
// overlap, or bad options, and with
// kResourceExhausted when the plan would hold kMaxPlanOps reads or more.
Result<ReadPlan> PlanReads(std::span<const Segment> segments,
                           const PlanOptions& options);

}  // namespace shardload
