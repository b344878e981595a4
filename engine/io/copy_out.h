// The one place a staged read's bytes leave the worker's staging buffer:
// copies them to their destinations (a plain range, or the runs of the plan's
// scatter segments that the read covers, including runs the read's edges
// cut). Later conversions (dtype, device copies) plug in here.
// Thread-safe: writes only the destinations of the read it is given.
#pragma once

#include <cstddef>
#include <span>

#include "plan/read_op.h"

namespace shardload {

// REQUIRES: piece is a single read (PieceOf) that is staged and complete;
// `staging` holds its bytes from piece.offset on.
void CopyOut(const ReadOp& piece, const std::byte* staging, std::span<const Segment> scatter);

}  // namespace shardload
