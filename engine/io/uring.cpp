// Ring setup with flag fallback, registrations, and teardown.
// Thread-compatible.
#include "io/uring.h"

#include <sys/uio.h>

#include <atomic>
#include <cstdint>

namespace shardload {
namespace {

// liburing maps rings with raw system calls, which ThreadSanitizer does not
// see; a ring mapped where another thread's ring used to be then reads as a
// data race. This counter orders one ring's life before the next: released
// before a ring is unmapped, acquired after one is mapped. (Costs two atomic
// operations per ring.)
std::atomic<std::uint64_t> g_ring_lifetimes{0};

}  // namespace

Ring::~Ring() {
  if (!initialized_) return;
  g_ring_lifetimes.fetch_add(1, std::memory_order_release);
  io_uring_queue_exit(&ring_);
}

int Ring::Init(unsigned entries) {
  int ret = io_uring_queue_init(entries, &ring_, kPreferredRingFlags);
  if (ret == 0) {
    flags_ = kPreferredRingFlags;
  } else {
    ring_ = io_uring{};
    ret = io_uring_queue_init(entries, &ring_, 0);
    flags_ = 0;
  }
  initialized_ = ret == 0;
  (void)g_ring_lifetimes.load(std::memory_order_acquire);
  return ret;
}

bool Ring::RegisterFiles(std::span<const int> fds) {
  return io_uring_register_files(&ring_, fds.data(), static_cast<unsigned>(fds.size())) == 0;
}

bool Ring::RegisterBuffer(void* data, std::size_t size) {
  iovec iov{data, size};
  return io_uring_register_buffers(&ring_, &iov, 1) == 0;
}

}  // namespace shardload
