// A member's replicas (replicas.h): which of its segments are replicas, and
// how their bytes reach its memory from the node's memfd.
// Thread-safe: functions over their arguments (MapShared maps over memory
// the caller owns).
#include "coop/replicas.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <tuple>

#include "util/errno_error.h"

namespace shardload::coop {

ReplicaSplit SplitReplicas(std::span<const Segment> segments, const PlanMessage& plan,
                           std::byte* shared, unsigned member, std::uint64_t unit) {
  std::map<std::tuple<std::uint32_t, std::uint64_t, std::uint64_t>, const Replica*> by_range;
  for (const Replica& r : plan.replicas) by_range[{r.file, r.offset, r.length}] = &r;
  ReplicaSplit out;
  for (const Segment& s : segments) {
    auto it = s.count == 1 ? by_range.find({s.file, s.offset, s.length}) : by_range.end();
    if (it == by_range.end()) {
      out.own.push_back(s);
      continue;
    }
    const Replica& r = *it->second;
    out.mapped.emplace_back(s, r);
    if (r.filler != member) continue;
    Segment fill = s;
    fill.dst = shared + r.at;
    out.fills.push_back(fill);
    const std::uint64_t lo = r.at - r.offset % unit;
    const std::uint64_t hi = (r.at + r.length + unit - 1) / unit * unit;
    out.fill_windows.push_back({shared + lo, shared + hi});
  }
  return out;
}

std::vector<SharedRange> SharedRanges(std::span<const std::pair<Segment, Replica>> mapped) {
  std::vector<SharedRange> ranges;
  for (const auto& [seg, r] : mapped) ranges.push_back({seg.dst, r.at, r.length});
  std::sort(ranges.begin(), ranges.end(),
            [](const SharedRange& a, const SharedRange& b) { return a.dst < b.dst; });
  std::vector<SharedRange> merged;
  for (const SharedRange& r : ranges) {
    SharedRange* last = merged.empty() ? nullptr : &merged.back();
    if (last != nullptr && last->dst + last->length == r.dst && last->at + last->length == r.at) {
      last->length += r.length;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

// Puts range R's bytes at R.dst: its whole pages mapped copy-on-write from
// MEMFD, the rest copied from SHARED. Copied whole where R.dst and R.at do
// not share their offset in a page, or when MAP is false. Returns the bytes
// mapped.
Result<std::uint64_t> MapShared(const SharedRange& r, int memfd, const std::byte* shared,
                                bool map) {
  constexpr std::uint64_t kPage = 4096;
  const auto addr = reinterpret_cast<std::uintptr_t>(r.dst);
  const std::uint64_t lo = (addr + kPage - 1) / kPage * kPage;
  const std::uint64_t hi = (addr + r.length) / kPage * kPage;
  if (!map || hi <= lo || (addr - r.at) % kPage != 0) {
    std::memcpy(r.dst, shared + r.at, r.length);
    return std::uint64_t{0};
  }
  std::memcpy(r.dst, shared + r.at, lo - addr);
  void* at = ::mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_FIXED, memfd, static_cast<off_t>(r.at + (lo - addr)));
  if (at == MAP_FAILED) {
    const int err = errno;
    // MAP_FIXED may have unmapped the range: put fresh memory back, copy.
    at = ::mmap(reinterpret_cast<void*>(lo), hi - lo, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (at == MAP_FAILED) return ErrnoError("memfd shardload-staging", "map a shared tensor", err);
    std::memcpy(reinterpret_cast<void*>(lo), shared + r.at + (lo - addr), hi - lo);
    std::memcpy(reinterpret_cast<void*>(hi), shared + r.at + (hi - addr), addr + r.length - hi);
    return std::uint64_t{0};
  }
  (void)::madvise(at, hi - lo, MADV_POPULATE_READ);  // in place now, not at first use
  std::memcpy(reinterpret_cast<void*>(hi), shared + r.at + (hi - addr), addr + r.length - hi);
  return hi - lo;
}

}  // namespace shardload::coop
