// Clipping a strided read Segment to a destination byte range: the arithmetic
// that cuts each local tensor's reads into staging windows (waves.h).
// Thread-safe: a pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "plan/read_op.h"

namespace shardload {

// Appends to OUT the part of S whose destination bytes lie in [lo, hi)
// (addresses compared as integers; S.dst is never dereferenced), with each
// byte keeping its file offset: at most three segments, a partial first run,
// the runs that fit whole (one strided segment) and a partial last run.
// Nothing is appended when no byte of S lands in the range.
// REQUIRES: S.count >= 1; S.dst_stride >= S.length when S.count > 1.
void ClipSegment(const Segment& s, std::uintptr_t lo, std::uintptr_t hi,
                 std::vector<Segment>& out);

}  // namespace shardload
