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
// -ECANCELED is an "other" error: once a worker stops it no longer applies
// the policy (the io_uring scheduler releases the slots of the reads its own
// cancel request ends), so a cancellation that reaches the policy came from
// elsewhere (the kernel tearing down io-wq, say) and the read did not happen.
//
// A CompletionFilter (test hook, below) may stand between the system call's
// result and the policy.
//
// Thread-compatible: each cursor and each filter belongs to one worker.
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

// Test hook, null in production (ExecContext::filter), where it costs one
// predictable branch per completion. Fault injection (tests/io/faulty_backend.h)
// installs one per worker to rewrite results and, for io_uring, to hand
// completions to the scheduler in another order, so that the backends' own
// retry, resubmit and cancel code is what runs under the faults.
class CompletionFilter {
 public:
  virtual ~CompletionFilter() = default;

  // Every result, just before the policy applies it: `res` (bytes, or
  // -errno) is what the system returned for a read of cursor.remaining(op)
  // bytes at cursor.offset(op) into `buf`; the return value is what the
  // policy sees. A filter that takes bytes away may overwrite them in `buf`
  // (as a failed read may leave them). Not called for the results a
  // stopping worker discards.
  virtual std::int64_t Rewrite(const ReadOp& op, const OpCursor& cursor, std::byte* buf,
                               std::int64_t res) = 0;

  // io_uring only. Each reaped read completion goes to Arrive; the scheduler
  // then calls Next until it returns false, handling each completion Next
  // hands back (in the filter's order). Completions not handed back are
  // held for a later reap. `in_kernel` is the number of reads still in the
  // kernel: at 0 no further completion will arrive, so Next must hand back
  // everything it holds.
  virtual void Arrive(std::uint64_t user_data, std::int32_t res) = 0;
  virtual bool Next(unsigned in_kernel, std::uint64_t* user_data, std::int32_t* res) = 0;
};

enum class Verdict { kDone, kResubmit, kFailed };

// Applies the policy to `res` (bytes, or -errno). On kFailed, *error is set.
Verdict OnReadResult(const ReadOp& op, std::int64_t res, std::uint64_t alignment,
                     const std::string& path, OpCursor& cursor, WorkerStats& stats,
                     Error* error);

// Called once per op (all its pieces), just before its first read: fault-in
// policy over the op's destination extent.
void PrepareDestination(const ReadOp& op, const ExecContext& ctx);

// A finished read (one piece of an op, PieceOf): copies staged bytes to
// their destinations (CopyOut, io/copy_out.h), tells ctx.observer which file
// bytes are in place, counts the delivered bytes and reports progress.
void DeliverOp(const ReadOp& op, const std::byte* staging, const ExecContext& ctx,
               WorkerStats& stats);

// Sets ctx.stop; records in stats.first_error whether this worker was the
// first to fail (so the loader reports that error first).
void SignalStop(const ExecContext& ctx, WorkerStats& stats);

// The error for a worker that stopped because another failed.
Error CancelledError();

}  // namespace shardload
