// The node's schedule of a cooperative load (docs/cooperate.md): from what
// each member needs (its read Segments' byte patterns, without memory), the
// union per shard as aligned extents, cut into waves of at most half the
// staging, each wave cut into one contiguous byte-balanced slot per member.
// The leader computes it once and sends it to every member.
// Planning cost: O(patterns log patterns + waves * members); a strided
// pattern is never expanded into its rows: the members' patterns of one
// tensor that share count and stride and sit side by side merge into one
// (the usual tensor-parallel split: together they cover the rows whole);
// what still has gaps is read as its covering range (bytes_gaps).
// Thread-safe: pure functions over values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plan/read_op.h"

namespace shardload::coop {

// A member's need: file bytes [offset + i*stride, + length) for i < count.
struct Need {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t count = 1;
  std::uint64_t stride = 0;

  std::uint64_t end() const { return offset + (count - 1) * stride + length; }
};

// The needs of SEGMENTS (what a load reads, whatever its destination).
std::vector<Need> NeedsOf(std::span<const Segment> segments);

// Bytes [offset, offset + length) of FILE held in staging at
// `staging` (an offset into the staging memory) during wave `wave`, read by
// member `slot`. Offsets and staging positions are multiples of the
// alignment; lengths too, except where a piece ends at its file's end.
struct Piece {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t staging = 0;
  std::uint32_t wave = 0;
  std::uint32_t slot = 0;
};

struct Schedule {
  std::vector<Piece> pieces;  // by wave, then slot, then (file, offset)
  std::uint32_t waves = 0;
  std::uint64_t half = 0;        // bytes per staging half (wave k uses half k % 2)
  std::uint64_t bytes = 0;       // bytes of the union, aligned (all pieces)
  std::uint64_t bytes_needed = 0;  // bytes of the members' needs, overlaps once
  std::uint64_t bytes_gaps = 0;  // bytes read between rows nobody needs

  // Pieces [first, last) of wave W (pieces are sorted by wave).
  std::pair<std::size_t, std::size_t> WaveRange(std::uint32_t w) const;
};

struct ScheduleOptions {
  std::uint64_t staging = 0;    // both halves
  std::uint64_t alignment = 4096;
  unsigned members = 1;
  std::vector<std::uint64_t> file_sizes;  // pieces never run past a file's end
};

// The union of NEEDS (every member's, in any order) and its waves. REQUIRES:
// staging >= 2 * alignment, alignment a power of two.
Schedule MakeSchedule(std::vector<Need> needs, const ScheduleOptions& options);

}  // namespace shardload::coop
