// The pread worker loop.
// Thread-safe: all state is local to Execute.
#include "io/pread_backend.h"

#include <unistd.h>

#include <cerrno>

#include "buffers/mapped_memory.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "io/mapped_read.h"

namespace shardload {
namespace {

// One read (a piece of an op), to completion or failure.
Status RunOne(const ReadOp& op, const ExecContext& ctx, std::byte* staging,
              WorkerStats& stats) {
  OpCursor cursor;
  const int fd = ctx.files->fd(op.file, op.direct);
  for (;;) {
    std::byte* buf = cursor.target(op, staging);
    ssize_t n = ::pread(fd, buf, cursor.remaining(op), static_cast<off_t>(cursor.offset(op)));
    std::int64_t res = n < 0 ? -static_cast<std::int64_t>(errno) : n;
    if (ctx.filter != nullptr) [[unlikely]] res = ctx.filter->Rewrite(op, cursor, buf, res);
    Error error;
    switch (OnReadResult(op, res, op.direct ? ctx.alignment : 1, ctx.files->path(op.file), cursor, stats,
                         &error)) {
      case Verdict::kDone:
        DeliverOp(op, staging, ctx, stats);
        return {};
      case Verdict::kResubmit:
        continue;
      case Verdict::kFailed:
        return error;
    }
  }
}

}  // namespace

Status PreadBackend::Execute(WorkerOps& ops, const ExecContext& ctx,
                             WorkerStats& stats) const {
  MappedMemory staging;
  if (ctx.staging_size > 0) {
    auto mem = MappedMemory::Map(ctx.staging_size, /*huge_pages=*/false);
    if (!mem) {
      SignalStop(ctx, stats);
      return std::move(mem).error();
    }
    staging = std::move(*mem);
  }
  for (;;) {
    if (ctx.stop->load(std::memory_order_relaxed)) return CancelledError();
    const std::size_t i = ops.Next();
    if (i == OpQueue::kNone) return {};
    const ReadOp& op = ops.op(i);
    PrepareDestination(op, ctx);
    if (op.mapped) {
      ++stats.read_ops;
      if (Status s = MappedRead(op, ctx, stats); !s) {
        stats.failed_op = i;
        SignalStop(ctx, stats);
        return s;
      }
      continue;
    }
    for (std::uint64_t k = 0; k < op.pieces; ++k) {
      if (k > 0 && ctx.stop->load(std::memory_order_relaxed)) return CancelledError();
      ++stats.read_ops;
      if (Status s = RunOne(PieceOf(op, k), ctx, staging.data(), stats); !s) {
        stats.failed_op = i;
        SignalStop(ctx, stats);
        return s;
      }
    }
  }
}

}  // namespace shardload
