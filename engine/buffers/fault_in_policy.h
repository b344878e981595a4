// How the pages of a library-owned arena get faulted in: by the workers, each
// for the reads it issues, with huge or 4 KiB pages decided region by region
// from timed samples.
//
// On these VMs the first touch of fresh memory costs what the host charges
// for it. Memory the guest used a moment ago comes back cheap, and then
// transparent huge pages (MADV_HUGEPAGE) win by far: ~0.1 ms per 2 MiB page
// (20 GB/s), faulted in by the read's own copy. Memory that sat idle went
// back to the host (free page reporting hands over free 2 MiB blocks, which
// is exactly what THP draws from): a huge page then costs ~4.5 ms (0.45 GB/s)
// and 4 KiB pages come ~1.4x faster. The two states mix within one load.
// Measured on 8 GB loads (docs/performance.md): giving huge pages up for the
// whole arena after a few slow samples lost 2x when memory was mostly fast;
// never giving them up lost 1.4x when it was mostly slow. So the decision is
// local and cheap to get wrong:
//
//   * The arena is cut into kRegionSize regions. The first worker to read
//     into a region faults in the region's first huge page itself and times it
//     (thread CPU time: counts the host's stall, not preemption).
//   * The region keeps huge pages unless that sample was slow and most of the
//     last kWindow samples (from any region) were slow too; then the rest of
//     the region gets MADV_NOHUGEPAGE.
//   * Reads into 4 KiB-page memory (such regions, or an arena mapped without
//     huge pages) are preceded by MADV_POPULATE_WRITE on their destination
//     (~20-30% faster than faulting page by page inside the copy).
//
// A wrong decision costs at most one region; a slow sample costs ~3 ms more
// than 4 KiB pages would have (~5% of a 64 MiB region at 4 KiB-page speed).
//
// Thread-safe: BeforeRead is called concurrently by all workers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace shardload {

class FaultInPolicy {
 public:
  static constexpr std::size_t kRegionSize = 64ULL << 20;
  // A 2 MiB fault-in slower than this is slow (2 GB/s).
  static constexpr double kSlowSeconds = 1e-3;
  static constexpr unsigned kWindow = 5;

  // Faults in the huge page at `page` (2 MiB, 2 MiB aligned) and returns the
  // seconds it took. Tests substitute their own.
  using FaultTimer = double (*)(std::byte* page);
  static double TimeHugePageFault(std::byte* page);

  enum class Pages : std::uint8_t { kUndecided, kDeciding, kHuge, kSmall };

  // [begin, begin + size): the arena; `huge_pages`: it was mapped 2 MiB
  // aligned and advised MADV_HUGEPAGE. Must outlive the policy's use.
  FaultInPolicy(std::byte* begin, std::size_t size, bool huge_pages,
                FaultTimer timer = &TimeHugePageFault);

  // A worker is about to read into [dst, dst + length) of the arena (a
  // range not inside the arena is ignored).
  void BeforeRead(std::byte* dst, std::size_t length);

  std::size_t regions() const { return regions_count_; }
  Pages region_pages(std::size_t region) const {
    return static_cast<Pages>(regions_[region].load(std::memory_order_acquire));
  }
  // What happened, in words (for LoadStats::memory).
  std::string Describe() const;

 private:
  // The region's pages, deciding them first when this caller is the first.
  Pages RegionPages(std::size_t region);
  Pages Decide(std::size_t region);
  bool RecentlySlow(bool is_slow);

  std::byte* const begin_;
  const std::size_t size_;
  const bool huge_pages_;
  const FaultTimer timer_;
  const std::size_t regions_count_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> regions_;
  std::atomic<std::uint32_t> recent_{0};  // the last kWindow samples, 1 = slow
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::uint64_t> slow_samples_{0};
  std::atomic<std::uint64_t> small_regions_{0};
};

}  // namespace shardload
