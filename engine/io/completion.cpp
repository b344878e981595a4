// The completion policy table of completion.h, written once.
// Thread-compatible.
#include "io/completion.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "buffers/fault_in_policy.h"
#include "buffers/mapped_memory.h"
#include "io/copy_out.h"
#include "util/errno_error.h"

namespace shardload {
namespace {

std::string ReadContext(const ReadOp& op) {
  return "read of " + std::to_string(op.length) + " bytes at offset " +
         std::to_string(op.offset);
}

// Names the read, what it needed and got, and the file's size now (it was
// larger when the checkpoint was described).
Error TruncatedError(const ReadOp& op, const std::string& path, std::uint64_t got) {
  std::string detail = "truncated: " + ReadContext(op) + " needs " +
                       std::to_string(op.required) + " bytes, got " + std::to_string(got) +
                       " before the end of the file";
  struct stat st = {};
  if (::stat(path.c_str(), &st) == 0) {
    detail += " (the file now has " + std::to_string(st.st_size) + " bytes)";
  }
  Error e = MakeError(ErrorCode::kTruncated, path, "", std::move(detail));
  e.offset = op.offset + got;
  return e;
}

// Tells ctx.observer where the file bytes of finished read OP landed: one
// range for a read in place or a plain copy-out, one per run part of a
// scatter (as CopyOut copied them).
void ObserveDelivery(const ReadOp& op, const ExecContext& ctx) {
  DeliveryObserver& observer = *ctx.observer;
  if (!op.staged()) {
    observer.Delivered(op.file, op.offset, op.offset + op.required, op.dst);
    return;
  }
  const std::uint64_t lo = op.offset + op.copy_skip;
  const std::uint64_t hi = lo + op.copy_length;
  if (op.scatter_count == 0) {
    observer.Delivered(op.file, lo, hi, op.copy_dst);
    return;
  }
  for (const Segment& seg : ctx.scatter.subspan(op.scatter_begin, op.scatter_count)) {
    ForEachRunPart(seg, lo, hi, [&](std::uint64_t at, std::byte* dst, std::uint64_t n) {
      observer.Delivered(op.file, at, at + n, dst);
    });
  }
}

}  // namespace

Verdict OnReadResult(const ReadOp& op, std::int64_t res, std::uint64_t alignment,
                     const std::string& path, OpCursor& cursor, WorkerStats& stats,
                     Error* error) {
  if (res < 0) {
    int err = static_cast<int>(-res);
    if ((err == EAGAIN || err == EINTR) && cursor.retries < kMaxRetries) {
      ++cursor.retries;
      ++stats.retries;
      return Verdict::kResubmit;
    }
    *error = ErrnoError(path, ReadContext(op), err);
    stats.failed_offset = op.offset + cursor.done;
    error->offset = stats.failed_offset;
    return Verdict::kFailed;
  }
  cursor.retries = 0;
  stats.bytes_read += static_cast<std::uint64_t>(res);
  if (op.direct) stats.bytes_read_direct += static_cast<std::uint64_t>(res);
  const std::uint64_t end = cursor.done + static_cast<std::uint64_t>(res);
  if (end >= op.required) {
    cursor.done = end;
    return Verdict::kDone;
  }
  if (end <= cursor.reached || res == 0) {
    *error = TruncatedError(op, path, std::max(end, cursor.reached));
    stats.failed_offset = op.offset + std::max(end, cursor.reached);
    return Verdict::kFailed;
  }
  cursor.reached = end;
  cursor.done = end & ~(alignment - 1);
  ++stats.short_reads;
  return Verdict::kResubmit;
}

void PrepareDestination(const ReadOp& op, const ExecContext& ctx) {
  std::byte* dst = op.staged() ? op.copy_dst : op.dst;
  std::size_t length = op.dst_extent;
  if (length == 0) length = op.staged() ? op.copy_length : op.length;
  if (ctx.arena_fault_in != nullptr) {
    ctx.arena_fault_in->BeforeRead(dst, length);
  } else if (ctx.prefault) {
    PrefaultForWrite(dst, length);
  }
}

void DeliverOp(const ReadOp& op, const std::byte* staging, const ExecContext& ctx,
               WorkerStats& stats) {
  if (op.staged()) CopyOut(op, staging, ctx.scatter);
  if (ctx.observer != nullptr) ObserveDelivery(op, ctx);
  stats.bytes_delivered += op.delivered;
  if (ctx.progress != nullptr) ctx.progress->Add(op.delivered);
}

void SignalStop(const ExecContext& ctx, WorkerStats& stats) {
  bool expected = false;
  stats.first_error = ctx.stop->compare_exchange_strong(expected, true, std::memory_order_relaxed);
}

Error CancelledError() {
  return MakeError(ErrorCode::kCancelled, "", "", "stopped: another worker failed");
}

}  // namespace shardload
