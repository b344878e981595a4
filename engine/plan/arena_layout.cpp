// Mirrored arena layout (see arena_layout.h).
// Thread-safe: no shared state.
#include "plan/arena_layout.h"

#include <algorithm>

namespace shardload {
namespace {

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }
std::uint64_t AlignUp(std::uint64_t x, std::uint64_t a) { return AlignDown(x + (a - 1), a); }

}  // namespace

ArenaLayout LayOutArena(std::span<const ArenaItem> items, std::uint64_t alignment) {
  const std::uint64_t a = alignment;
  std::vector<std::size_t> order(items.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    if (items[x].file != items[y].file) return items[x].file < items[y].file;
    if (items[x].offset != items[y].offset) return items[x].offset < items[y].offset;
    return items[x].size < items[y].size;  // empty tensors first
  });

  ArenaLayout layout;
  layout.position.assign(items.size(), 0);
  std::uint64_t cursor = 0;
  bool open = false;              // a run is open
  std::uint32_t run_file = 0;
  std::uint64_t run_begin = 0;    // file offset where the open run starts
  std::uint64_t run_end = 0;      // file offset where it ends
  std::uint64_t run_pos = 0;      // arena offset of run_begin
  auto close_run = [&] {
    if (!open) return;
    std::uint64_t end = run_pos + (run_end - run_begin) + (AlignUp(run_end, a) - run_end);
    layout.regions.back().end = end;
    cursor = end;
    open = false;
  };
  for (std::size_t i : order) {
    const ArenaItem& it = items[i];
    if (!(open && it.file == run_file && it.offset == run_end)) {
      close_run();
      std::uint64_t base = AlignUp(cursor, a);
      open = true;
      run_file = it.file;
      run_begin = run_end = it.offset;
      run_pos = base + (it.offset - AlignDown(it.offset, a));
      layout.regions.push_back({base, base});
    }
    layout.position[i] = run_pos + (it.offset - run_begin);
    run_end = it.offset + it.size;
  }
  close_run();
  layout.size = cursor;
  return layout;
}

}  // namespace shardload
