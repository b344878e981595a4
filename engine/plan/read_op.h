// The values that flow from the read planner to the I/O backends:
//   Segment  a strided byte pattern of one shard that must land at one place
//            (a whole tensor: one run; a tensor-parallel slice: `count` rows);
//   Window   memory the planner may overwrite with bytes nobody asked for (the
//            alignment slack of an O_DIRECT read), e.g. a library-owned region;
//   ReadOp   one unit of scheduled work: one read, or a batch of equally
//            spaced reads (exact strided runs), or one staged read whose
//            bytes are scattered to many runs, or one window of a mapped
//            shard whose bytes are scattered the same way (ReadOp::mapped);
//   PieceOf  the k-th read of a ReadOp, as a single-read ReadOp.
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

// One read, or `pieces` reads. The kernel is asked for `length` bytes at
// `offset` of `file` into `dst` (or, when dst is null, into the worker's
// staging buffer). The read is complete once its first `required` bytes have
// arrived: an aligned read may run past the end of the data, where the file
// may end (EOF is fine there).
//
// A staged read then copies out (io/copy_out.h): with scatter_count == 0,
// `copy_length` bytes from staging + `copy_skip` to `copy_dst`; otherwise
// the file bytes [offset + copy_skip, + copy_length) that fall inside the
// runs of the plan's scatter segments [scatter_begin, + scatter_count), each
// to where its run lands.
//
// A batch (pieces > 1) is `pieces` such reads, piece k shifted by
// k*src_stride in the file and k*dst_stride in memory (dst or copy_dst);
// with `align` > 1 (staged O_DIRECT pieces) each piece's read is re-widened
// to the alignment grid around its run [offset + copy_skip + k*src_stride,
// + copy_length). Batches never scatter.
//
// A mapped op (mapped, always staged and a single piece) reads nothing: the
// worker populates file bytes [offset, offset + length) (from the page
// boundary below) of the load's mapping of the shard and copies out of it as
// a staged read copies out of its staging buffer (io/mapped_read.h).
struct ReadOp {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;     // > 0; at most kMaxReadLength
  std::uint64_t required = 0;   // 0 < required <= length
  std::byte* dst = nullptr;     // nullptr: staged
  std::byte* copy_dst = nullptr;
  std::uint64_t copy_skip = 0;
  std::uint64_t copy_length = 0;
  std::uint64_t delivered = 0;  // destination bytes this read (piece) fills
  std::uint32_t tag = 0;        // tag of the first segment it covers
  bool direct = false;          // O_DIRECT read (FileTable's direct descriptor)
  std::uint32_t scatter_begin = 0;
  std::uint32_t scatter_count = 0;
  std::uint64_t pieces = 1;     // reads in this op (>= 1)
  std::uint64_t src_stride = 0;
  std::uint64_t dst_stride = 0;
  std::uint64_t align = 1;      // > 1: re-align each piece (staged O_DIRECT batch)
  bool mapped = false;          // copy out of a mapping instead of reading
  // Destination bytes this op writes lie in [first, first + dst_extent), first
  // being dst (direct) or copy_dst (staged): what the fault-in policy sees.
  std::uint64_t dst_extent = 0;

  bool staged() const { return dst == nullptr; }
};

// The k-th read of `op` (k < op.pieces) as a single read.
inline ReadOp PieceOf(const ReadOp& op, std::uint64_t k) {
  ReadOp p = op;
  p.pieces = 1;
  if (k == 0 && op.align <= 1) return p;
  const std::uint64_t shift = k * op.src_stride;
  const std::uint64_t move = k * op.dst_stride;
  if (op.staged()) p.copy_dst = op.copy_dst + move;
  else p.dst = op.dst + move;
  if (op.align > 1) {
    const std::uint64_t a = op.align;
    const std::uint64_t run = op.offset + op.copy_skip + shift;
    const std::uint64_t end = run + op.copy_length;
    p.offset = run & ~(a - 1);
    p.length = ((end + a - 1) & ~(a - 1)) - p.offset;
    p.copy_skip = run - p.offset;
    p.required = end - p.offset;
  } else {
    p.offset = op.offset + shift;
  }
  return p;
}

// The runs of `seg` that overlap file bytes [lo, hi): runs [first, end).
struct RunRange {
  std::uint64_t first = 0;
  std::uint64_t end = 0;
};
inline RunRange RunsOverlapping(const Segment& seg, std::uint64_t lo, std::uint64_t hi) {
  if (hi <= seg.offset || seg.count == 0) return {};
  const std::uint64_t stride = seg.count > 1 ? seg.src_stride : 1;
  const std::uint64_t rel_lo = lo > seg.offset ? lo - seg.offset : 0;
  const std::uint64_t rel_hi = hi - seg.offset;
  // First run ending after lo; last run starting before hi.
  std::uint64_t first = rel_lo < seg.length ? 0 : (rel_lo - seg.length) / stride + 1;
  std::uint64_t end = seg.count > 1 ? (rel_hi - 1) / stride + 1 : 1;
  if (end > seg.count) end = seg.count;
  if (first >= end) return {};
  return {first, end};
}

// Calls fn(file_offset, dst, n) for each part of a run of `seg` inside file
// bytes [lo, hi), in file order.
template <typename Fn>
void ForEachRunPart(const Segment& seg, std::uint64_t lo, std::uint64_t hi, Fn&& fn) {
  const RunRange r = RunsOverlapping(seg, lo, hi);
  for (std::uint64_t i = r.first; i < r.end; ++i) {
    const std::uint64_t run = seg.offset + i * seg.src_stride;
    const std::uint64_t a = run > lo ? run : lo;
    const std::uint64_t b = run + seg.length < hi ? run + seg.length : hi;
    if (a < b) fn(a, seg.dst + i * seg.dst_stride + (a - run), b - a);
  }
}

// Largest single read: read(2) and io_uring take 32-bit lengths, and Linux
// caps one read at 0x7ffff000 bytes anyway.
inline constexpr std::uint64_t kMaxReadLength = 1ULL << 30;

// A plan holds fewer ReadOps than this: the scheduler indexes them in 32 bits,
// with one value to spare.
inline constexpr std::uint64_t kMaxPlanOps = 0xffffffff;

}  // namespace shardload
