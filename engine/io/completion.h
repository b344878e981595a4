// The completion policy shared by every backend: what one read's result
// means for its ReadOp, and how a finished op delivers its bytes.
//
// COMPLETION POLICY, for a read of `op.length - done` bytes at
// `op.offset + done` (done = bytes of the op already in place):
//
//   | result                                   | action                                   |
//   |------------------------------------------|------------------------------------------|
//   | done + res >= op.required                | done: copy out if staged, count, report  |
//   | 0 < res and done + res > any earlier end | short read: done = AlignDown(done + res) |
//   |                                          | (alignment 1 unless O_DIRECT), resubmit  |
//   |                                          | the rest, count short_reads              |
//   | res == 0, or no byte beyond an earlier   | kTruncated: "read of N bytes at offset X |
//   | end (EOF before the planned end)         | needs R bytes, got K ..." naming the file|
//   | -EAGAIN / -EINTR                         | resubmit unchanged, count retries; after |
//   |                                          | kMaxRetries in a row, kIoError           |
//   | other res < 0                            | ErrnoError: kIoError with file, offset,  |
//   |                                          | length and errno                         |
//
// Thread-compatible: each cursor belongs to one worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/io_backend.h"
#include "plan/read_op.h"

namespace shardload {

inline constexpr unsigned kMaxRetries = 64;

// The progress of one ReadOp across its submissions.
struct OpCursor {
  std::uint64_t done = 0;     // bytes from op.offset already in place
  std::uint64_t reached = 0;  // furthest end any completion reached
  unsigned retries = 0;       // EAGAIN/EINTR in a row

  std::uint64_t offset(const ReadOp& op) const { return op.offset + done; }
  std::uint64_t remaining(const ReadOp& op) const { return op.length - done; }
  // Where the next read lands: the op's destination or `staging`.
  std::byte* target(const ReadOp& op, std::byte* staging) const {
    return (op.staged() ? staging : op.dst) + done;
  }
};

enum class Verdict { kDone, kResubmit, kFailed };

// Applies the policy to `res` (bytes, or -errno). On kFailed, *error is set.
Verdict OnReadResult(const ReadOp& op, std::int64_t res, std::uint64_t alignment,
                     const std::string& path, OpCursor& cursor, WorkerStats& stats,
                     Error* error);

// Called once per op, just before its first read: fault-in policy.
void PrepareDestination(const ReadOp& op, const ExecContext& ctx);

// A finished op: copies staged bytes to their destination, counts the
// delivered bytes and reports progress.
void DeliverOp(const ReadOp& op, const std::byte* staging, const ExecContext& ctx,
               WorkerStats& stats);

// Sets ctx.stop; records in stats.first_error whether this worker was the
// first to fail (so the loader reports that error first).
void SignalStop(const ExecContext& ctx, WorkerStats& stats);

// The error for a worker that stopped because another failed.
Error CancelledError();

}  // namespace shardload
