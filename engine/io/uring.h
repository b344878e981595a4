// Ring: RAII owner of one io_uring instance (io_uring_queue_exit on
// destruction), plus the registrations it holds. No policy here; the
// scheduler is in uring_backend.cpp.
// Thread-compatible, and with SINGLE_ISSUER only usable by the thread that
// called Init: one Ring per worker, created on that worker.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <span>

#include "shardload/error.h"

namespace shardload {

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // Sets up `entries` submission slots, asking for SINGLE_ISSUER |
  // DEFER_TASKRUN and retrying without flags when the kernel refuses.
  // Returns the negative errno of the last attempt on failure.
  int Init(unsigned entries);
  // REQUIRES: Init succeeded. Registrations are optional speedups: a false
  // return leaves the ring usable without them.
  bool RegisterFiles(std::span<const int> fds);
  bool RegisterBuffer(void* data, std::size_t size);

  io_uring* get() { return &ring_; }
  unsigned setup_flags() const { return flags_; }

 private:
  io_uring ring_{};
  bool initialized_ = false;
  unsigned flags_ = 0;
};

// Setup flags tried first by Ring::Init.
inline constexpr unsigned kPreferredRingFlags =
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;

}  // namespace shardload
