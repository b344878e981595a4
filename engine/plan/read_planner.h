// The read planner: turns segments (shard byte range -> destination address)
// into ReadOps in (file, offset) order, cut into one share per worker.
//
//   1. sort by (file, offset);
//   2. coalesce: merge a segment into the previous one only when it follows it
//      both in the file and in destination memory:
//
//        file:  |--- s1 ---|--- s2 ---|    |--- s3 ---|
//        dst:   |--- s1 ---|--- s2 ---|  |--- s3 ---|      s1+s2 merge; s3 not
//
//   3. O_DIRECT only: widen each range to the alignment grid. When the
//      destination sits at the same offset modulo the alignment as the file
//      (dst ≡ offset mod A) and the slack lies inside a Window and outside
//      every other range's destination, the widened read goes straight to the
//      destination; otherwise it goes through a staging buffer and is copied:
//
//        file:    A0       a=====================b        B1     (A-aligned)
//        direct:  [slack   |==== tensor bytes ===|  slack]  -> dst - (a - A0)
//        staged:  [A0 ......... read into staging ..... B1] -> copy a..b to dst
//
//   4. split into chunks of at most chunk_size (direct reads at aligned
//      boundaries; staged reads at most staging_chunk bytes each);
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
#include "shardload/error.h"

namespace shardload {

struct PlanOptions {
  // Largest read. Default: 4 MiB. Capped at kMaxReadLength.
  std::uint64_t chunk_size = 4ULL << 20;
  // Number of worker shares. Default: 1.
  unsigned workers = 1;
  // Plan aligned reads for O_DIRECT. Default: off.
  bool direct = false;
  // O_DIRECT alignment of offsets, lengths and memory (a power of two).
  // Default: 4096.
  std::uint64_t alignment = 4096;
  // Largest staged read (rounded up to the alignment). Default: 1 MiB.
  std::uint64_t staging_chunk = 1ULL << 20;
  // Memory that aligned reads may overwrite outside the segments. Default: none.
  std::span<const Window> windows;
};

// How the runs of one tag (a tensor) are read:
//   kExact   each run (or coalesced range) is read on its own, nothing extra;
//   kStaged  the covering range of the runs is read in large chunks into a
//            worker's staging buffer and the runs are copied out;
//   kMixed   runs whose gaps cost less to read than another read are merged
//            into staged reads, the rest are read exactly.
// kAuto (options only): the cost model decides per tag.
enum class ReadStrategy : std::uint8_t { kAuto, kExact, kStaged, kMixed };

// What the plan reads for one tag.
struct TagReads {
  ReadStrategy strategy = ReadStrategy::kExact;
  std::uint64_t bytes_read = 0;  // bytes read from storage for this tag
  std::uint64_t read_ops = 0;    // reads issued for this tag
};

struct ReadPlan {
  // Per Segment::tag (index = tag; tags no segment used stay zero).
  std::vector<TagReads> tags;
  std::vector<ReadOp> ops;  // in (file, offset) order
  // Worker w's share is ops[bounds[w], bounds[w + 1]); options.workers + 1
  // entries, from 0 to ops.size().
  std::vector<std::size_t> bounds;
  std::uint64_t bytes_requested = 0;  // sum of ReadOp::length
  std::uint64_t bytes_delivered = 0;  // sum of ReadOp::delivered
  std::uint64_t staging_size = 0;     // largest staged read; 0: none staged

  unsigned workers() const { return bounds.empty() ? 0 : static_cast<unsigned>(bounds.size() - 1); }
  std::span<const ReadOp> share(unsigned w) const {
    return std::span<const ReadOp>(ops).subspan(bounds[w], bounds[w + 1] - bounds[w]);
  }
};

// Plans the reads. Fails with kInvalidArgument on a null destination, a range
// that overflows, destinations that overlap, or bad options, and with
// kResourceExhausted when the plan would hold kMaxPlanOps reads or more.
Result<ReadPlan> PlanReads(std::span<const Segment> segments,
                           const PlanOptions& options);

}  // namespace shardload
