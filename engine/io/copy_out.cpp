// Staged copy-out (see copy_out.h).
// Thread-safe: no shared state.
#include "io/copy_out.h"

#include <cstring>

namespace shardload {

void CopyOut(const ReadOp& piece, const std::byte* staging, std::span<const Segment> scatter) {
  if (piece.scatter_count == 0) {
    std::memcpy(piece.copy_dst, staging + piece.copy_skip, piece.copy_length);
    return;
  }
  const std::uint64_t lo = piece.offset + piece.copy_skip;
  const std::uint64_t hi = lo + piece.copy_length;
  for (const Segment& seg : scatter.subspan(piece.scatter_begin, piece.scatter_count)) {
    ForEachRunPart(seg, lo, hi, [&](std::uint64_t at, std::byte* dst, std::uint64_t n) {
      std::memcpy(dst, staging + (at - piece.offset), n);
    });
  }
}

}  // namespace shardload
