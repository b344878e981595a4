// FaultInPolicy: one timed huge-page sample per region, the region's choice
// of page size, and populating 4 KiB pages ahead of each read.
// Thread-safe.
#include "buffers/fault_in_policy.h"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <bit>

#include "buffers/mapped_memory.h"

namespace shardload {
namespace {

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

constexpr std::uint8_t AsByte(FaultInPolicy::Pages p) { return static_cast<std::uint8_t>(p); }

}  // namespace

double FaultInPolicy::TimeHugePageFault(std::byte* page) {
  const double start = ThreadCpuSeconds();
  PrefaultForWrite(page, kHugePageSize);
  return ThreadCpuSeconds() - start;
}

FaultInPolicy::FaultInPolicy(std::byte* begin, std::size_t size, bool huge_pages,
                             FaultTimer timer)
    : begin_(begin),
      size_(size),
      huge_pages_(huge_pages),
      timer_(timer),
      regions_count_(huge_pages ? (size + kRegionSize - 1) / kRegionSize : 0),
      regions_(std::make_unique<std::atomic<std::uint8_t>[]>(regions_count_)) {
  for (std::size_t r = 0; r < regions_count_; ++r) regions_[r].store(AsByte(Pages::kUndecided));
}

void FaultInPolicy::BeforeRead(std::byte* dst, std::size_t length) {
  // Outside the arena (a cooperative load's node copy): not ours to fault in.
  const auto at = reinterpret_cast<std::uintptr_t>(dst);
  const auto base = reinterpret_cast<std::uintptr_t>(begin_);
  if (length == 0 || length > size_ || at < base || at - base > size_ - length) return;
  if (!huge_pages_) return PrefaultForWrite(dst, length);
  const auto offset = static_cast<std::size_t>(dst - begin_);
  bool small = false;
  for (std::size_t r = offset / kRegionSize; r <= (offset + length - 1) / kRegionSize; ++r) {
    small |= RegionPages(r) == Pages::kSmall;
  }
  // Huge pages are faulted in by the read's copy; populating a range that is
  // partly huge-page memory faults those huge pages in, which is as good.
  if (small) PrefaultForWrite(dst, length);
}

FaultInPolicy::Pages FaultInPolicy::RegionPages(std::size_t region) {
  std::uint8_t state = regions_[region].load(std::memory_order_acquire);
  if (state != AsByte(Pages::kUndecided)) {
    // Another worker is deciding: its sample is in flight; read with the
    // default (huge pages) rather than wait.
    return state == AsByte(Pages::kDeciding) ? Pages::kHuge : static_cast<Pages>(state);
  }
  if (!regions_[region].compare_exchange_strong(state, AsByte(Pages::kDeciding),
                                                std::memory_order_acq_rel)) {
    return state == AsByte(Pages::kDeciding) ? Pages::kHuge : static_cast<Pages>(state);
  }
  const Pages pages = Decide(region);
  regions_[region].store(AsByte(pages), std::memory_order_release);
  return pages;
}

FaultInPolicy::Pages FaultInPolicy::Decide(std::size_t region) {
  std::byte* const page = begin_ + region * kRegionSize;  // 2 MiB aligned
  std::byte* const end = begin_ + std::min(size_, (region + 1) * kRegionSize);
  if (end - page < static_cast<std::ptrdiff_t>(2 * kHugePageSize)) return Pages::kHuge;
  const bool is_slow = timer_(page) >= kSlowSeconds;
  samples_.fetch_add(1, std::memory_order_relaxed);
  if (is_slow) slow_samples_.fetch_add(1, std::memory_order_relaxed);
  if (!RecentlySlow(is_slow)) return Pages::kHuge;
  // Pages already faulted stay huge; the rest of the region gets 4 KiB pages.
  std::byte* const rest = page + kHugePageSize;
  if (::madvise(rest, static_cast<std::size_t>(end - rest), MADV_NOHUGEPAGE) != 0) {
    return Pages::kHuge;
  }
  small_regions_.fetch_add(1, std::memory_order_relaxed);
  return Pages::kSmall;
}

bool FaultInPolicy::RecentlySlow(bool is_slow) {
  constexpr std::uint32_t kMask = (1u << kWindow) - 1;
  const std::uint32_t bit = is_slow ? 1 : 0;
  std::uint32_t before = recent_.load(std::memory_order_relaxed);
  while (!recent_.compare_exchange_weak(before, ((before << 1) | bit) & kMask,
                                        std::memory_order_relaxed)) {
  }
  const auto window = static_cast<unsigned>(
      std::min<std::uint64_t>(samples_.load(std::memory_order_relaxed), kWindow));
  const auto slow = static_cast<unsigned>(std::popcount(((before << 1) | bit) & kMask));
  return is_slow && 2 * slow > window;
}

std::string FaultInPolicy::Describe() const {
  if (!huge_pages_) return "4 KiB pages (huge_pages off), populated before each read";
  const std::uint64_t small = small_regions_.load(std::memory_order_relaxed);
  std::string what = "transparent huge pages (MADV_HUGEPAGE)";
  if (small > 0) {
    what += "; 4 KiB pages populated before each read in " + std::to_string(small) + " of " +
            std::to_string(regions_count_) + " 64 MiB regions";
  }
  return what + "; " + std::to_string(slow_samples_.load(std::memory_order_relaxed)) + " of " +
         std::to_string(samples_.load(std::memory_order_relaxed)) +
         " timed huge-page faults slow";
}

}  // namespace shardload
