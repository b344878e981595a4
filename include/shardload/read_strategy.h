// How the read planner reads a tensor's bytes (ReadStrategy), what it
// assumes reads cost (CostModel), and the cap on over-read: options shared by
// LoadOptions (shardload/loader.h) and the read planner (engine/plan).
// Thread-compatible value types.
#pragma once

#include <cstdint>

namespace shardload {

// How the runs of one tensor (a tensor-parallel slice: `count` rows of
// `length` bytes, `stride` apart in the file) are read:
//   kExact   each run (or range of adjacent runs) is read on its own, nothing
//            extra (O_DIRECT: the aligned superset of each run);
//   kStaged  the covering range of the runs is read in large chunks into a
//            worker's staging buffer and the runs are copied out from there;
//   kMixed   per strided part of the tensor, whichever of the two the cost
//            model prices lower (gaps cheaper than a read are read through);
//   kMapped  buffered parts: the shard is mapped once per load (mmap
//            MAP_SHARED) and the covering range is populated
//            (MADV_POPULATE_READ) in windows of at most 32 MiB, the runs
//            copied out, the window's page-table entries dropped
//            (MADV_DONTNEED): no read system call per run; one operation =
//            one window with its copies. O_DIRECT parts (not in the page
//            cache) are read as kMixed reads them.
// kAuto (options only): the cost model picks the cheapest of the four per
// tensor that stays within max_over_read.
enum class ReadStrategy : std::uint8_t { kAuto, kExact, kStaged, kMixed, kMapped };

// "auto", "exact", "staged", "mixed", "mapped".
const char* ReadStrategyName(ReadStrategy strategy);

// What one read operation and one byte cost, in nanoseconds of one worker.
struct IoCost {
  double op_ns = 0;
  double byte_ns = 0;
};

// The planner's price list. Defaults measured by perf/read_cost (pread, one
// thread, 3584-byte runs 28672 apart, 1 MiB reads, 32 MiB mapped windows) on
// the 2-vCPU cloud VM of docs/performance.md ("Read cost model"), a busy
// machine: O_DIRECT and cold op costs are a serial read's latency. Override
// when the storage differs.
struct CostModel {
  IoCost warm{650, 0.26};        // buffered, pages in the page cache
  IoCost cold{89000, 1.56};      // buffered, pages not cached (Segment::cold)
  IoCost direct{190000, 1.31};   // O_DIRECT (per aligned byte read)
  // kMapped, pages in the page cache: op_ns per window (two madvise calls),
  // byte_ns per byte of the window (page-table entries made and dropped:
  // every page of the covering range). Runs cost copy_byte_ns on top.
  IoCost mapped{1500, 0.135};
  double copy_byte_ns = 0.27;    // copying a staged or mapped byte to its destination
};

}  // namespace shardload
