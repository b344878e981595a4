// The values that flow from the read planner to the I/O backends:
//   Segment  a byte range of one shard that must land at one address (a whole
//            tensor today; one strided row of a tensor-parallel slice later);
//   Window   memory the planner may overwrite with bytes nobody asked for (the
//            alignment slack of an O_DIRECT read), e.g. a library-owned region;
//   ReadOp   one read system call's worth of work, after coalescing, splitting
//            and alignment.
// Thread-compatible value types.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shardload {

// A strided segment: `count` runs of `length` bytes; run i is file bytes
// [offset + i*src_stride, +length) landing at dst + i*dst_stride. count == 1
// is a plain range (strides unused).
struct Segment {
  std::uint32_t file = 0;      // index into the checkpoint's shards
  std::uint64_t offset = 0;    // absolute file offset of the first byte of run 0
  std::uint64_t length = 0;    // bytes per run; zero-length segments are dropped
  std::byte* dst = nullptr;    // where byte `offset` lands
  std::uint32_t tag = 0;       // the caller's id (e.g. a tensor index), for errors
  std::uint64_t count = 1;     // runs (>= 1)
  std::uint64_t src_stride = 0;  // file distance between runs (>= length when count > 1)
  std::uint64_t dst_stride = 0;  // memory distance between runs (>= length when count > 1)
  bool direct = false;         // read with O_DIRECT (the loader decides per segment)
  bool cold = false;           // buffered, but expected to miss the page cache (cost model)
};

struct Window {
  std::byte* begin = nullptr;
  std::byte* end = nullptr;
};

// One read. The kernel is asked for `length` bytes at `offset` of `file`
// into `dst` (or, when dst is null, into the worker's staging buffer). The read
// is complete once its first `required` bytes have arrived: an aligned read may
// run past the end of the data, where the file may end (EOF is fine there).
// A staged read then copies `copy_length` bytes from staging + `copy_skip` to
// `copy_dst`.
struct ReadOp {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;     // > 0; at most kMaxReadLength
  std::uint64_t required = 0;   // 0 < required <= length
  std::byte* dst = nullptr;     // nullptr: staged
  std::byte* copy_dst = nullptr;
  std::uint64_t copy_skip = 0;
  std::uint64_t copy_length = 0;
  std::uint64_t delivered = 0;  // destination bytes this read fills
  std::uint32_t tag = 0;        // tag of the first segment it covers
  bool direct = false;          // O_DIRECT read (FileTable's direct descriptor)

  bool staged() const { return dst == nullptr; }
};

// Largest single read: read(2) and io_uring take 32-bit lengths, and Linux
// caps one read at 0x7ffff000 bytes anyway.
inline constexpr std::uint64_t kMaxReadLength = 1ULL << 30;

// A plan holds fewer ReadOps than this: the scheduler indexes them in 32 bits,
// with one value to spare.
inline constexpr std::uint64_t kMaxPlanOps = 0xffffffff;

}  // namespace shardload
