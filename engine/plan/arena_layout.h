// Where tensors go in memory the library owns: the file layout, mirrored.
// Tensors of one shard that follow each other in the file form a run; each
// run gets a region of the arena that starts on the alignment grid and holds
// the run at the same offset modulo the alignment as in the file, with slack
// up to the grid on both sides:
//
//   file (shard s):  ..|....[t3][t1][t7]....|....   (| = alignment grid)
//   arena:           |....[t3][t1][t7]....|[next run...
//                    ^ region (Window) ^
//
// So an O_DIRECT read of the aligned superset lands with every tensor byte at
// its final place (no second copy), and buffered reads of a run coalesce into
// chunk-sized reads. Gaps between runs are never read into the arena.
// Thread-safe: a pure function.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace shardload {

struct ArenaItem {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

struct ArenaLayout {
  std::uint64_t size = 0;               // arena bytes needed
  std::vector<std::uint64_t> position;  // per item: offset in the arena
  struct Region {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };
  std::vector<Region> regions;          // the runs' regions, with slack
};

// REQUIRES: alignment is a power of two; items of one file do not overlap.
ArenaLayout LayOutArena(std::span<const ArenaItem> items, std::uint64_t alignment);

}  // namespace shardload
