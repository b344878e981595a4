// Arena layout: runs of file-adjacent tensors mirrored modulo the alignment.
#include <doctest/doctest.h>

#include <vector>

#include "plan/arena_layout.h"

namespace shardload {
namespace {

TEST_CASE("adjacent tensors of a shard form one mirrored run") {
  // File order t1, t0, t2 (names do not matter), back to back from 1000.
  std::vector<ArenaItem> items = {{0, 1300, 50}, {0, 1000, 300}, {0, 1350, 10}};
  ArenaLayout layout = LayOutArena(items, 512);
  CHECK(layout.regions.size() == 1);
  CHECK(layout.position[1] == 1000 % 512);
  CHECK(layout.position[0] == layout.position[1] + 300);
  CHECK(layout.position[2] == layout.position[1] + 350);
  CHECK(layout.regions[0].begin == 0);
  CHECK(layout.regions[0].end == 1024);  // up to AlignUp(1360) - AlignDown(1000)
  CHECK(layout.size == 1024);
}

TEST_CASE("a gap in the file or another shard starts a new aligned region") {
  std::vector<ArenaItem> items = {
      {0, 8, 100}, {0, 200, 100},  // gap after the first
      {1, 8, 4000},                 // another shard
  };
  ArenaLayout layout = LayOutArena(items, 4096);
  REQUIRE(layout.regions.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(layout.regions[i].begin % 4096 == 0);
    if (i > 0) CHECK(layout.regions[i].begin >= layout.regions[i - 1].end);
    CHECK(layout.position[i] % 4096 == items[i].offset % 4096);
    CHECK(layout.position[i] >= layout.regions[i].begin);
    CHECK(layout.position[i] + items[i].size <= layout.regions[i].end);
  }
}

TEST_CASE("empty tensors get a place and cost nothing inside a run") {
  std::vector<ArenaItem> items = {{0, 64, 0}, {0, 64, 32}, {0, 96, 0}};
  ArenaLayout layout = LayOutArena(items, 64);
  CHECK(layout.regions.size() == 1);
  CHECK(layout.position[0] == layout.position[1]);
  CHECK(layout.position[2] == layout.position[1] + 32);
  CHECK(LayOutArena({}, 64).size == 0);
}

}  // namespace
}  // namespace shardload
