// A cooperative member's replicas (protocol.h: a range every member needs
// whole, filled once into the node's memfd by its filler): which of its
// segments are replicas it fills or maps, and how a replica's bytes reach
// its destination (its whole pages mapped copy-on-write from the memfd,
// MAP_PRIVATE | MAP_FIXED; the partial first and last pages copied).
// Thread-safe: functions over their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "coop/protocol.h"
#include "plan/read_op.h"
#include "shardload/error.h"

namespace shardload::coop {

// A member's segments split by the plan's replicas: what it reads or copies
// itself (OWN: its other segments; FILLS: the replicas it fills, aimed at
// the memfd mapping SHARED) and the replica segments it maps at the end.
struct ReplicaSplit {
  std::vector<Segment> own;
  std::vector<Segment> fills;
  std::vector<Window> fill_windows;
  std::vector<std::pair<Segment, Replica>> mapped;
};

// SEGMENTS split for MEMBER by PLAN's replicas (fill windows on the UNIT grid).
ReplicaSplit SplitReplicas(std::span<const Segment> segments, const PlanMessage& plan,
                           std::byte* shared, unsigned member, std::uint64_t unit);

// LENGTH bytes at AT of the node's memfd (mapped at SHARED) that belong at
// DST: replicas adjacent both there and in the memfd make one range.
struct SharedRange {
  std::byte* dst = nullptr;
  std::uint64_t at = 0;
  std::uint64_t length = 0;
};

// The ranges of MAPPED, sorted by destination, adjacent ones merged.
std::vector<SharedRange> SharedRanges(std::span<const std::pair<Segment, Replica>> mapped);

// At most this many ranges are mapped per load (each is a mapping, and the
// kernel caps a process's at vm.max_map_count, 65530 by default); the rest
// are copied.
inline constexpr std::size_t kMaxSharedMappings = 4096;

// Puts range R's bytes at R.dst: its whole pages mapped copy-on-write from
// MEMFD, the rest copied from SHARED. Copied whole where R.dst and R.at do
// not share their offset in a page, or when MAP is false. Returns the bytes
// mapped.
Result<std::uint64_t> MapShared(const SharedRange& r, int memfd, const std::byte* shared,
                                bool map);

}  // namespace shardload::coop
