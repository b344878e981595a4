// How the pages of a library-owned arena get faulted in: by the workers, each
// for the reads it issues, in whichever of two ways was measured faster here.
//
//   * Huge pages (MADV_HUGEPAGE), while they are cheap: the read's own copy
//     faults them in (a separate MADV_POPULATE_WRITE pass measured ~15%
//     slower: the zeroed page falls out of cache before the copy).
//   * 4 KiB pages (huge pages off, or given up): MADV_POPULATE_WRITE on each
//     read's destination just before the read (~20-30% faster than faulting
//     page by page inside the copy).
//
// Giving huge pages up: on these VMs free memory goes back to the host after
// a while (free page reporting hands over free 2 MiB blocks: seconds to tens
// of seconds), and those blocks are exactly what THP draws from. A fresh huge
// page then costs ~4.6 ms (0.5 GB/s) instead of ~0.1 ms (20 GB/s when the
// memory was recently used), while 4 KiB pages come at ~3 GB/s in both
// states; and the states mix. So before some reads (the first, then one per
// kSampleEvery bytes), a worker faults in one huge page of its destination
// itself and times it in thread CPU time (which counts the host's stall but
// not preemption by other processes). Huge pages cost 0.1 + 4.6 f ms per
// 2 MiB when a fraction f of them is slow, against ~0.6 ms with 4 KiB pages
// (break-even f ~ 0.11): so once two or more and at least 15% of all samples
// were slow (a cold start is caught by the first two), or 4 of the last 5
// (the allocator has reached memory the host took back), the rest of the
// arena is switched to 4 KiB pages (MADV_NOHUGEPAGE). Isolated slow samples
// in a mostly fast arena do not switch it. Pages already faulted stay huge.
//
// Thread-safe: BeforeRead is called concurrently by all workers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace shardload {

class FaultInPolicy {
 public:
  static constexpr std::uint64_t kSampleEvery = 16ULL << 20;
  // A 2 MiB fault-in slower than this is slow (2 GB/s).
  static constexpr double kSlowSeconds = 1e-3;
  static constexpr std::uint64_t kGiveUpPercent = 15;

  // [begin, begin + size): the arena; `huge_pages`: it was mapped 2 MiB
  // aligned and advised MADV_HUGEPAGE. Must outlive the policy's use.
  FaultInPolicy(std::byte* begin, std::size_t size, bool huge_pages)
      : begin_(begin), size_(size), state_(huge_pages ? kHuge : kSmallPages) {}

  // A worker is about to read into [dst, dst + length) of the arena.
  void BeforeRead(std::byte* dst, std::size_t length);

  bool gave_up_huge_pages() const { return state_.load(std::memory_order_relaxed) == kGaveUp; }
  // What happened, in words (for LoadStats::memory).
  std::string Describe() const;

 private:
  enum State : int { kHuge, kGaveUp, kSmallPages };
  void SampleHugePage(std::byte* dst, std::size_t length);
  void GiveUp(double seconds);

  std::byte* const begin_;
  const std::size_t size_;
  std::atomic<int> state_;
  std::atomic<std::uint64_t> bytes_{0};   // read so far, for the sampling schedule
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::uint64_t> slow_samples_{0};
  std::atomic<std::uint32_t> recent_{0};  // the last 5 samples, 1 = slow
  std::atomic<std::uint64_t> slow_ns_{0};  // the sample that made it give up
};

}  // namespace shardload
