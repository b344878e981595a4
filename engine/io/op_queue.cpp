// OpQueue: per-worker shares of a read plan, taken from the front by their
// owner and split in half by thieves (see op_queue.h).
// Thread-safe.
#include "io/op_queue.h"

namespace shardload {
namespace {

constexpr std::uint64_t Pack(std::uint64_t front, std::uint64_t back) {
  return front | (back << 32);
}
constexpr std::uint64_t Front(std::uint64_t range) { return range & 0xffffffffu; }
constexpr std::uint64_t Back(std::uint64_t range) { return range >> 32; }
constexpr std::uint64_t Left(std::uint64_t range) { return Back(range) - Front(range); }

}  // namespace

OpQueue::OpQueue(std::span<const ReadOp> ops, std::span<const std::size_t> bounds)
    : ops_(ops),
      workers_(bounds.empty() ? 0 : static_cast<unsigned>(bounds.size() - 1)),
      shares_(std::make_unique<Share[]>(workers_)) {
  for (unsigned w = 0; w < workers_; ++w) {
    shares_[w].range.store(Pack(bounds[w], bounds[w + 1]), std::memory_order_relaxed);
  }
}

std::size_t OpQueue::Take(unsigned worker) {
  std::atomic<std::uint64_t>& mine = shares_[worker].range;
  do {
    std::uint64_t range = mine.load(std::memory_order_acquire);
    while (Left(range) > 0) {
      if (mine.compare_exchange_weak(range, Pack(Front(range) + 1, Back(range)),
                                     std::memory_order_acq_rel)) {
        return Front(range);
      }
    }
  } while (Steal(worker));
  return kNone;
}

bool OpQueue::Steal(unsigned worker) {
  for (;;) {
    unsigned victim = worker;
    std::uint64_t range = 0;
    for (unsigned w = 0; w < workers_; ++w) {
      if (w == worker) continue;
      std::uint64_t r = shares_[w].range.load(std::memory_order_acquire);
      if (Left(r) > Left(range)) {
        victim = w;
        range = r;
      }
    }
    if (victim == worker) return false;  // nothing left anywhere else
    const std::uint64_t take = (Left(range) + 1) / 2;
    const std::uint64_t cut = Back(range) - take;
    if (shares_[victim].range.compare_exchange_strong(range, Pack(Front(range), cut),
                                                      std::memory_order_acq_rel)) {
      // Only this worker writes its own share when it is empty; thieves
      // skip empty shares, so a plain store cannot lose an update.
      shares_[worker].range.store(Pack(cut, Back(range)), std::memory_order_release);
      stolen_.fetch_add(take, std::memory_order_relaxed);
      return true;
    }
    // The victim or another thief moved first: look again.
  }
}

}  // namespace shardload
