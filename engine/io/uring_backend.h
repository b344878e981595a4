// The io_uring backend: each worker runs its ReadOps through a ring of its
// own, created on the worker's thread for the duration of Execute. The
// scheduler loop and its design comment are in uring_backend.cpp.
// Thread-safe: stateless; Execute runs concurrently on many workers.
#pragma once

#include "io/io_backend.h"

namespace shardload {

class UringBackend final : public IoBackend {
 public:
  Status Execute(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats) const override;
  const char* name() const override { return "io_uring"; }
};

// Reads in flight per ring, at most.
inline constexpr unsigned kMaxQueueDepth = 4096;

// Staging memory per worker is capped: with staged reads the queue depth is
// at most kStagingBudget / staging buffer size (at least 1).
inline constexpr std::uint64_t kStagingBudget = 16ULL << 20;

}  // namespace shardload
