// The io_uring scheduler: one ring per worker, batched submission and
// reaping, a fixed array of in-flight slots, one completion policy.
// Thread-compatible: a Scheduler lives on one worker's stack.
#include "io/uring_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "buffers/mapped_memory.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "io/mapped_read.h"
#include "io/pread_backend.h"
#include "io/uring.h"
#include "util/errno_error.h"

namespace shardload {
namespace {

constexpr std::uint64_t kCancelTag = ~std::uint64_t{0};
constexpr std::uint32_t kIdle = ~std::uint32_t{0};

// One in-flight read. user_data is the slot's index, so a completion can be
// range-checked; an idle slot has op == kIdle (poisoned).
struct Slot {
  std::uint32_t op = kIdle;
  ReadOp piece;  // the read in flight: piece k of ops_.op(op) (PieceOf)
  OpCursor cursor;
  std::byte* staging = nullptr;  // this slot's staging buffer (staged reads)
};

// Runs the ops one worker takes from the load's OpQueue.
//
// LIFECYCLE. InitRing() sets up the ring on the calling thread (SINGLE_ISSUER
// | DEFER_TASKRUN, or no flags if refused), registers the load's files (fixed
// files) and, when the plan has staged O_DIRECT reads, maps one staging buffer
// per slot and registers them as one fixed buffer (READ_FIXED). Run() loops
// until every op is done or the load stops; the Ring, registrations and
// staging memory are released by destructors when Execute returns, after the
// last read has completed.
//
// BATCHING. Each turn of the loop prepares as many SQEs as the SQ has room for
// and slots are idle (resubmissions first, then the next pieces of the
// current op, then new ops taken from the OpQueue, each new op's destination
// first passed to PrepareDestination: the fault-in policy of ExecContext; a
// slot holds one piece, so a batch op's reads run queue_depth at a time; a
// mapped op takes no slot: it runs right there, RunMapped), then makes one
// io_uring_submit_and_wait(1) call, then reaps every ready CQE with
// io_uring_for_each_cqe and one io_uring_cq_advance. Cached buffered reads
// complete inline during the submit, so a turn costs one system call.
//
// COMPLETION POLICY. The table is in completion.h (shared with the pread
// backend): full -> deliver; short -> resubmit the rest; EOF early ->
// kTruncated; EAGAIN/EINTR -> resubmit; other errors -> kIoError. Tests may
// set ctx.filter to rewrite results and reorder completions (ReapFiltered).
//
// STOPPING. On this worker's first error, or when another worker has set
// ctx.stop, the loop submits nothing new, asks the kernel to cancel whatever
// is in flight (IORING_OP_ASYNC_CANCEL, ANY), and keeps reaping until no slot
// is in flight, so no read can land in memory the caller is about to free.
//
// CONCURRENCY / THREAD SAFETY. Everything here belongs to one worker thread;
// the only shared state is ctx.stop (relaxed flag), ctx.progress (atomic) and
// the FileTable (read-only). Workers write disjoint destination bytes.
class Scheduler {
 public:
  Scheduler(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats)
      : ops_(ops), ctx_(ctx), stats_(stats) {}

  // Returns 0 or the negative errno of io_uring_setup.
  int InitRing();
  // Maps and registers the staging buffers, if the plan has staged reads.
  Status InitStaging();
  // Runs the loop. Should anything throw (std::bad_alloc), waits for the
  // reads in flight before rethrowing, so none lands in freed memory.
  Status Run();

 private:
  Status Loop();
  void DrainQuietly() noexcept;
  unsigned Depth() const;
  void Fill();
  bool RunMapped(std::size_t index);
  void PrepareSqe(std::uint32_t slot_index);
  void Reap();
  void ReapFiltered();
  void Complete(std::uint64_t user_data, std::int32_t res);
  void Release(std::uint32_t slot_index);
  void Fail(Error error);
  void BeginStop();

  WorkerOps& ops_;
  const ExecContext& ctx_;
  WorkerStats& stats_;
  Ring ring_;
  MappedMemory staging_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> idle_;   // slots free for a new op
  std::vector<std::uint32_t> ready_;  // slots waiting for resubmission
  bool taken_all_ = false;            // the OpQueue has no op left for us
  std::size_t current_ = OpQueue::kNone;  // the op whose pieces are being issued
  std::uint64_t next_piece_ = 0;      // its next piece
  unsigned inflight_ = 0;             // slots with a read in the kernel
  unsigned held_ = 0;                 // of those, reaped but held by ctx_.filter
  bool stopping_ = false;
  bool fixed_files_ = false;
  bool fixed_buffers_ = false;
  std::optional<Error> error_;
};

unsigned Scheduler::Depth() const {
  std::uint64_t depth = std::max(1u, ctx_.queue_depth);
  if (ctx_.staging_size > 0) {
    depth = std::min(depth, std::max<std::uint64_t>(1, kStagingBudget / ctx_.staging_size));
  }
  depth = std::min<std::uint64_t>(depth, kMaxQueueDepth);
  const std::uint64_t reads = ctx_.reads > 0 ? ctx_.reads : ops_.plan_size();
  return static_cast<unsigned>(std::min<std::uint64_t>(depth, reads));
}

int Scheduler::InitRing() {
  const unsigned depth = Depth();
  // One extra SQ entry for the cancel request.
  if (int ret = ring_.Init(depth + 1); ret < 0) return ret;
  std::vector<int> fds = ctx_.files->Descriptors();
  fixed_files_ = ring_.RegisterFiles(fds);
  slots_.resize(depth);
  idle_.reserve(depth);
  ready_.reserve(depth);  // the loop itself does not allocate
  for (std::uint32_t i = depth; i-- > 0;) idle_.push_back(i);
  return 0;
}

Status Scheduler::InitStaging() {
  if (ctx_.staging_size == 0) return {};
  auto mem = MappedMemory::Map(slots_.size() * ctx_.staging_size, /*huge_pages=*/false);
  if (!mem) return std::move(mem).error();
  staging_ = std::move(*mem);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].staging = staging_.data() + i * ctx_.staging_size;
  }
  fixed_buffers_ = ring_.RegisterBuffer(staging_.data(), staging_.size());
  return {};
}

Status Scheduler::Run() {
  try {
    return Loop();
  } catch (...) {
    DrainQuietly();
    throw;
  }
}

void Scheduler::DrainQuietly() noexcept {
  while (inflight_ > held_) {
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) return;  // the ring is unusable
    if (io_uring_cqe_get_data64(cqe) != kCancelTag) --inflight_;
    io_uring_cqe_seen(ring_.get(), cqe);
  }
}

Status Scheduler::Loop() {
  for (;;) {
    if (!stopping_ && ctx_.stop->load(std::memory_order_relaxed)) BeginStop();
    if (!stopping_) Fill();
    if (inflight_ == 0 && (stopping_ || (taken_all_ && ready_.empty()))) break;
    int ret = io_uring_submit_and_wait(ring_.get(), 1);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      Fail(ErrnoError("", "io_uring_enter", -ret));
      if (inflight_ > 0 && io_uring_wait_cqe(ring_.get(), nullptr) < 0) {
        break;  // the ring is unusable; nothing more can be reaped
      }
    }
    Reap();
  }
  if (error_) return *error_;
  if (stopping_) return CancelledError();
  return {};
}

void Scheduler::Fill() {
  unsigned space = io_uring_sq_space_left(ring_.get());
  while (space > 0 && !ready_.empty()) {
    PrepareSqe(ready_.back());
    ready_.pop_back();
    --space;
  }
  while (space > 0 && !idle_.empty() && !taken_all_) {
    if (current_ == OpQueue::kNone || next_piece_ == ops_.op(current_).pieces) {
      current_ = ops_.Next();
      next_piece_ = 0;
      if (current_ == OpQueue::kNone) {
        taken_all_ = true;
        break;
      }
      PrepareDestination(ops_.op(current_), ctx_);
      if (ops_.op(current_).mapped) {
        next_piece_ = 1;
        if (!RunMapped(current_)) break;
        // Mapped ops take milliseconds: stop between them (BeginStop, so
        // that Loop does not wait for a completion when nothing is in flight).
        if (ctx_.stop->load(std::memory_order_relaxed)) {
          BeginStop();
          break;
        }
        continue;
      }
    }
    std::uint32_t s = idle_.back();
    idle_.pop_back();
    slots_[s].op = static_cast<std::uint32_t>(current_);
    slots_[s].piece = PieceOf(ops_.op(current_), next_piece_++);
    slots_[s].cursor = OpCursor{};
    ++stats_.read_ops;
    PrepareSqe(s);
    --space;
  }
}

// A mapped op runs here, on this thread, between submissions (no SQE, no
// slot): io/mapped_read.h. False when it failed (the load stops).
bool Scheduler::RunMapped(std::size_t index) {
  ++stats_.read_ops;
  if (Status s = MappedRead(ops_.op(index), ctx_, stats_); !s) {
    stats_.failed_op = index;
    Fail(std::move(s).error());
    return false;
  }
  return true;
}

// The one place an SQE is filled in.
void Scheduler::PrepareSqe(std::uint32_t slot_index) {
  Slot& slot = slots_[slot_index];
  const ReadOp& op = slot.piece;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());  // room checked by Fill
  std::byte* buf = slot.cursor.target(op, slot.staging);
  auto len = static_cast<unsigned>(slot.cursor.remaining(op));
  std::uint64_t offset = slot.cursor.offset(op);
  int fd = fixed_files_ ? static_cast<int>(ctx_.files->FixedIndex(op.file, op.direct))
                        : ctx_.files->fd(op.file, op.direct);
  if (op.staged() && fixed_buffers_) {
    io_uring_prep_read_fixed(sqe, fd, buf, len, offset, 0);
  } else {
    io_uring_prep_read(sqe, fd, buf, len, offset);
  }
  if (fixed_files_) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, slot_index);
  ++inflight_;
}

void Scheduler::Reap() {
  if (ctx_.filter != nullptr) [[unlikely]] return ReapFiltered();
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    ++seen;
    Complete(io_uring_cqe_get_data64(cqe), cqe->res);
  }
  io_uring_cq_advance(ring_.get(), seen);
}

// Test hook (CompletionFilter, completion.h): the filter takes the reaped
// completions and hands them back in its own order, possibly holding some
// (still counted in inflight_, and in held_) until a later reap; it hands
// back everything once no other read is in the kernel.
void Scheduler::ReapFiltered() {
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    ++seen;
    if (io_uring_cqe_get_data64(cqe) == kCancelTag) continue;
    ctx_.filter->Arrive(io_uring_cqe_get_data64(cqe), cqe->res);
    ++held_;
  }
  io_uring_cq_advance(ring_.get(), seen);
  std::uint64_t user_data;
  std::int32_t res;
  while (held_ > 0 && ctx_.filter->Next(inflight_ - held_, &user_data, &res)) {
    --held_;
    Complete(user_data, res);
  }
}

void Scheduler::Complete(std::uint64_t user_data, std::int32_t res) {
  if (user_data == kCancelTag) return;
  if (user_data >= slots_.size() || slots_[user_data].op == kIdle) {
    // Cannot happen: every SQE carries the index of a busy slot.
    Fail(MakeError(ErrorCode::kInternal, "", "",
                   "io_uring completion for unknown slot " + std::to_string(user_data)));
    return;
  }
  auto index = static_cast<std::uint32_t>(user_data);
  Slot& slot = slots_[index];
  --inflight_;
  if (stopping_) return Release(index);  // draining: the result no longer matters
  const ReadOp& op = slot.piece;
  const std::int64_t result =
      ctx_.filter == nullptr
          ? res
          : ctx_.filter->Rewrite(op, slot.cursor, slot.cursor.target(op, slot.staging), res);
  Error error;
  switch (OnReadResult(op, result, op.direct ? ctx_.alignment : 1, ctx_.files->path(op.file), slot.cursor,
                       stats_, &error)) {
    case Verdict::kDone:
      DeliverOp(op, slot.staging, ctx_, stats_);
      Release(index);
      break;
    case Verdict::kResubmit:
      ready_.push_back(index);
      break;
    case Verdict::kFailed:
      stats_.failed_op = slot.op;
      Release(index);
      Fail(std::move(error));
      break;
  }
}

void Scheduler::Release(std::uint32_t slot_index) {
  slots_[slot_index].op = kIdle;
  idle_.push_back(slot_index);
}

void Scheduler::Fail(Error error) {
  if (!error_) {
    error_ = std::move(error);
    SignalStop(ctx_, stats_);
  }
  BeginStop();
}

void Scheduler::BeginStop() {
  if (stopping_) return;
  stopping_ = true;
  for (std::uint32_t s : ready_) Release(s);
  ready_.clear();
  if (inflight_ == 0) return;
  // Best effort: reads already copying cannot be cancelled; the loop waits.
  if (io_uring_sqe* sqe = io_uring_get_sqe(ring_.get())) {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, kCancelTag);
  }
}

std::string RingFailure(int err) {
  return "io_uring_setup failed on a worker thread: " + std::string(std::strerror(err));
}

}  // namespace

Status UringBackend::Execute(WorkerOps& ops, const ExecContext& ctx,
                             WorkerStats& stats) const {
  if (ops.plan_size() == 0) return {};
  Scheduler scheduler(ops, ctx, stats);
  if (int ret = scheduler.InitRing(); ret < 0) {
    if (!ctx.allow_fallback) {
      Error e = MakeError(ErrorCode::kUnsupported, "", "", RingFailure(-ret));
      e.sys_errno = -ret;
      SignalStop(ctx, stats);
      return e;
    }
    stats.fell_back = true;
    stats.note = RingFailure(-ret) + "; this worker ran pread";
    return PreadBackend().Execute(ops, ctx, stats);
  }
  if (Status s = scheduler.InitStaging(); !s) {
    SignalStop(ctx, stats);
    return s;
  }
  return scheduler.Run();
}

}  // namespace shardload
