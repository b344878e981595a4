// FaultInPolicy: timed huge-page samples, the switch to 4 KiB pages, and
// populating 4 KiB pages ahead of each read.
// Thread-safe.
#include "buffers/fault_in_policy.h"

#include <sys/mman.h>
#include <time.h>

#include <bit>
#include <cstdio>

#include "buffers/mapped_memory.h"

namespace shardload {
namespace {

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

void FaultInPolicy::BeforeRead(std::byte* dst, std::size_t length) {
  if (size_ == 0) return;
  if (state_.load(std::memory_order_relaxed) == kHuge) return SampleHugePage(dst, length);
  PrefaultForWrite(dst, length);  // 4 KiB pages
}

void FaultInPolicy::SampleHugePage(std::byte* dst, std::size_t length) {
  const std::uint64_t before = bytes_.fetch_add(length, std::memory_order_relaxed);
  const bool due = before == 0 || before / kSampleEvery != (before + length) / kSampleEvery;
  if (!due) return;
  // The first huge page starting inside the destination: the read is about
  // to fault it (or, for a read shorter than a huge page, its successor, which
  // the worker's next reads will). Populating does not change the contents.
  auto addr = reinterpret_cast<std::uintptr_t>(dst);
  std::uintptr_t page = (addr + kHugePageSize - 1) & ~(std::uintptr_t{kHugePageSize} - 1);
  if (page + kHugePageSize > reinterpret_cast<std::uintptr_t>(begin_) + size_) return;
  const double start = ThreadCpuSeconds();
  PrefaultForWrite(reinterpret_cast<std::byte*>(page), kHugePageSize);
  const double seconds = ThreadCpuSeconds() - start;

  const bool is_slow = seconds >= kSlowSeconds;
  const std::uint64_t slow = is_slow ? slow_samples_.fetch_add(1, std::memory_order_relaxed) + 1
                                     : slow_samples_.load(std::memory_order_relaxed);
  const std::uint64_t samples = samples_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::uint32_t recent = recent_.load(std::memory_order_relaxed);
  while (!recent_.compare_exchange_weak(recent, ((recent << 1) | (is_slow ? 1 : 0)) & 0x1f,
                                        std::memory_order_relaxed)) {
  }
  const int recent_slow = std::popcount(((recent << 1) | (is_slow ? 1 : 0)) & 0x1fu);
  // Slow overall (two or more, and at least kGiveUpPercent of the samples),
  // or lately: 4 of the last 5, as when the allocator reaches memory the host
  // took back and what follows is likely the same.
  const bool too_many = slow >= 2 && slow * 100 >= kGiveUpPercent * samples;
  if (is_slow && (too_many || recent_slow >= 4)) GiveUp(seconds);
}

void FaultInPolicy::GiveUp(double seconds) {
  int expected = kHuge;
  if (!state_.compare_exchange_strong(expected, kGaveUp, std::memory_order_relaxed)) return;
  slow_ns_.store(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  // Pages already faulted stay huge; the rest of the arena gets 4 KiB pages.
  (void)::madvise(begin_, size_, MADV_NOHUGEPAGE);
}

std::string FaultInPolicy::Describe() const {
  const std::string counts = std::to_string(slow_samples_.load(std::memory_order_relaxed)) +
                             " of " + std::to_string(samples_.load(std::memory_order_relaxed)) +
                             " timed huge-page faults";
  switch (state_.load(std::memory_order_relaxed)) {
    case kHuge:
      return "transparent huge pages (MADV_HUGEPAGE); " + counts + " slow";
    case kGaveUp: {
      char ms[32];
      std::snprintf(ms, sizeof ms, "%.1f",
                    static_cast<double>(slow_ns_.load(std::memory_order_relaxed)) / 1e6);
      return "4 KiB pages for most of the arena, populated before each read: " + counts +
             " were slow (last " + ms +
             " ms for 2 MiB: memory idle long enough to go back to the host), so "
             "MADV_NOHUGEPAGE was applied";
    }
    default:
      return "4 KiB pages (huge_pages off), populated before each read";
  }
}

}  // namespace shardload
