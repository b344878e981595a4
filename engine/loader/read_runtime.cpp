// ReadRuntime (read_runtime.h): the backend probe, the plan of a read, and
// the workers that run it.
// Thread-safe as read_runtime.h says: the workers share only the op queue,
// the stop flag and the progress meter (io/).
#include "loader/read_runtime.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <utility>

#include <tbb/info.h>
#include <tbb/task_group.h>

#include "io/capabilities.h"
#include "io/mapped_read.h"
#include "loader/backend_name.h"
#include "loader/backend_override.h"
#include "loader/cancel_watch.h"
#include "loader/guard.h"

namespace shardload {
namespace {

// Hand-off edges that ThreadSanitizer can see (oneTBB's own synchronization
// is in an uninstrumented library): the tasks are built first (defer), then
// this counter is released, then they are spawned; each task acquires it
// before touching anything, and releases `finished` when done.
std::atomic<std::uint64_t> g_handoff{0};

unsigned OnlineCpus() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// The tensor holding byte `offset` of `shard` (else the first one after it):
// names the tensor of a failed read, which may span several.
const TensorInfo* TensorAt(std::span<const TensorInfo* const> tensors, std::uint32_t shard,
                           std::uint64_t offset) {
  const TensorInfo* best = nullptr;
  for (const TensorInfo* t : tensors) {
    if (t->shard != shard || t->size == 0 || t->offset + t->size <= offset) continue;
    if (best == nullptr || t->offset < best->offset) best = t;
  }
  return best;
}

// One worker's share, with everything it may throw turned into a Status.
Status RunWorker(const IoBackend& backend, WorkerOps ops, const ExecContext& ctx,
                 WorkerStats& stats) {
  try {
    return backend.Execute(ops, ctx, stats);
  } catch (const std::bad_alloc&) {
    SignalStop(ctx, stats);
    return OutOfMemory();
  } catch (...) {
    SignalStop(ctx, stats);
    return MakeError(ErrorCode::kInternal, "", "", "unexpected exception in a load worker");
  }
}

// Whether the backend is io_uring (else pread), and why: kUnsupported when
// BACKEND forces an io_uring that does not work.
Result<bool> ProbeBackend(Backend backend, std::string& reason) {
  if (backend == Backend::kPread) {
    reason = "pread: forced by LoadOptions::backend";
    return false;
  }
  Capabilities caps = ProbeCapabilities();
  if (caps.io_uring) {
    reason = caps.io_uring_reason;
    return true;
  }
  if (backend == Backend::kIoUring) {
    return MakeError(ErrorCode::kUnsupported, "", "",
                     "io_uring requested but unusable: " + caps.io_uring_reason);
  }
  reason = "pread fallback: " + caps.io_uring_reason;
  return false;
}

}  // namespace

ReadSettings SettingsOf(const LoadRequest& request) {
  return ReadSettings{request.mode, request.read_strategy, request.max_over_read,
                      request.cancel.get()};
}

Status CheckCancel(const CancelToken* cancel) {
  if (cancel != nullptr && cancel->cancelled()) {
    return MakeError(ErrorCode::kCancelled, "", "", "cancelled by the caller");
  }
  return {};
}

// At most oneTBB's limit of threads run at once (by default one per CPU);
// the plan still has `threads` worker lists, run as `threads` tasks.
ReadRuntime::ReadRuntime(const LoaderOptions& options, unsigned threads)
    : options_(options),
      threads_(threads),
      arena_(std::min(static_cast<int>(threads), tbb::info::default_concurrency())) {}

Result<std::unique_ptr<ReadRuntime>> ReadRuntime::Open(const LoaderOptions& options) {
  std::string reason;
  auto use_uring = ProbeBackend(options.backend, reason);
  if (!use_uring) return std::move(use_uring).error();
  const unsigned threads = options.threads == 0 ? OnlineCpus() : options.threads;
  std::unique_ptr<ReadRuntime> runtime(new ReadRuntime(options, threads));
  runtime->use_uring_ = *use_uring;
  runtime->backend_reason_ = std::move(reason);
  return runtime;
}

// Which segments are read with O_DIRECT is Segment::direct, set here by the
// one MarkResidency call of a host read.
Result<MarkedPlan> ReadRuntime::Plan(FileTable& files, std::span<const Segment> segments,
                                     std::span<const Window> windows,
                                     const ReadSettings& settings) const {
  std::vector<Segment> marked(segments.begin(), segments.end());
  auto mode = MarkResidency(marked, files, settings.mode);
  if (!mode) return std::move(mode).error();
  PlanOptions plan_options;
  plan_options.chunk_size = options_.chunk_size;
  plan_options.workers = threads_;
  plan_options.alignment = std::max<std::uint64_t>(files.alignment(), 1);
  plan_options.windows = windows;
  plan_options.strategy = settings.strategy;
  plan_options.max_over_read = settings.max_over_read;
  plan_options.cost = options_.cost_model;
  auto plan = PlanReads(marked, plan_options);
  if (!plan) return std::move(plan).error();
  return MarkedPlan{std::move(*plan), std::move(*mode)};
}

Result<LoadStats> ReadRuntime::Read(const ReadJob& job, std::span<const Segment> segments) {
  const ReadSettings& settings = job.settings;
  if (Status s = CheckCancel(settings.cancel); !s) return std::move(s).error();
  FileTable& files = *job.files;
  auto marked = Plan(files, segments, job.windows, settings);
  if (!marked) return std::move(marked).error();
  const ReadPlan* plan = &marked->plan;
  auto mappings = ShardMappings::Map(files, plan->ops);  // nothing unless reads are mapped
  if (!mappings) return std::move(mappings).error();

  std::atomic<bool> stop{false};
  CancelWatch watch(settings.cancel, &stop);
  ProgressMeter meter(plan->bytes_delivered, kProgressStep, job.progress);
  ExecContext ctx;
  ctx.files = &files;
  ctx.stop = &stop;
  ctx.progress = &meter;
  ctx.observer = job.observer;
  ctx.queue_depth = options_.queue_depth;
  ctx.alignment = files.alignment();
  ctx.staging_size = plan->staging_size;
  ctx.scatter = plan->scatter;
  ctx.mappings = &*mappings;
  ctx.reads = plan->reads;
  ctx.prefault = options_.prefault;
  ctx.arena_fault_in = job.fault_in;
  ctx.allow_fallback = options_.backend == Backend::kAuto;
  const IoBackend* chosen = ScopedBackendOverride::Current();  // null but in tests
  if (chosen == nullptr) chosen = use_uring_ ? static_cast<const IoBackend*>(&uring_) : &pread_;
  const IoBackend& backend = *chosen;

  OpQueue queue(plan->ops, plan->bounds);
  std::vector<WorkerStats> stats(threads_);
  std::vector<Status> status(threads_);
  RunWorkers(backend, *plan, queue, ctx, stats, status);
  if (Status s = CheckCancel(settings.cancel); !s) return std::move(s).error();
  if (auto error = FirstError(*plan, stats, status, job.tensors)) return std::move(*error);
  return SumStats(backend, *marked, settings.mode, stats);
}

// One oneTBB task per worker with a non-empty share, in this runtime's
// task_arena; the workers take their ops from `queue`.
void ReadRuntime::RunWorkers(const IoBackend& backend, const ReadPlan& plan, OpQueue& queue,
                             const ExecContext& ctx, std::vector<WorkerStats>& stats,
                             std::vector<Status>& status) {
  std::atomic<unsigned> finished{0};
  arena_.execute([&] {
    tbb::task_group group;
    std::vector<tbb::task_handle> tasks;
    for (unsigned w = 0; w < threads_; ++w) {
      if (plan.share(w).empty()) continue;
      tasks.push_back(group.defer([&, w] {
        (void)g_handoff.load(std::memory_order_acquire);
        status[w] = RunWorker(backend, WorkerOps(queue, w), ctx, stats[w]);
        finished.fetch_add(1, std::memory_order_release);
      }));
    }
    g_handoff.fetch_add(1, std::memory_order_release);
    for (tbb::task_handle& task : tasks) group.run(std::move(task));
    group.wait();
  });
  (void)finished.load(std::memory_order_acquire);
}

// The first error (from the worker that set `stop`), naming the tensor at
// the failing offset, plus a count of the other workers' errors.
std::optional<Error> ReadRuntime::FirstError(const ReadPlan& plan,
                                             const std::vector<WorkerStats>& stats,
                                             const std::vector<Status>& status,
                                             std::span<const TensorInfo* const> tensors) const {
  int first = -1;
  unsigned errors = 0;
  for (unsigned w = 0; w < threads_; ++w) {
    if (status[w].ok() || status[w].error().code == ErrorCode::kCancelled) continue;
    ++errors;
    if (first < 0 || stats[w].first_error) first = static_cast<int>(w);
  }
  if (first < 0) return std::nullopt;
  Error e = status[first].error();
  const WorkerStats& ws = stats[first];
  if (e.tensor.empty() && ws.failed_op < plan.ops.size()) {
    const ReadOp& op = plan.ops[ws.failed_op];
    if (const TensorInfo* t = TensorAt(tensors, op.file, ws.failed_offset)) e.tensor = t->name;
  }
  if (errors > 1) e.detail += " (and " + std::to_string(errors - 1) + " more errors)";
  return e;
}

LoadStats ReadRuntime::SumStats(const IoBackend& backend, const MarkedPlan& marked, IoMode mode,
                                const std::vector<WorkerStats>& stats) const {
  const ReadPlan& plan = marked.plan;
  LoadStats out;
  out.threads = threads_;
  out.mode = mode;
  out.mode_note = marked.mode.note;
  out.backend = BackendOf(backend);
  out.backend_reason = backend_reason_;
  unsigned fell_back = 0, busy = 0;
  for (unsigned w = 0; w < threads_; ++w) {
    const WorkerStats& ws = stats[w];
    out.bytes += ws.bytes_delivered;
    out.bytes_read += ws.bytes_read;
    out.bytes_direct += ws.bytes_read_direct;
    out.bytes_buffered += ws.bytes_read - ws.bytes_read_direct;
    out.read_ops += ws.read_ops;
    out.short_reads += ws.short_reads;
    out.retries += ws.retries;
    busy += plan.share(w).empty() ? 0 : 1;
    if (ws.fell_back) {
      ++fell_back;
      out.backend_reason += "; worker " + std::to_string(w) + ": " + ws.note;
    }
  }
  if (fell_back > 0 && fell_back == busy) out.backend = Backend::kPread;  // all of them
  return out;
}

}  // namespace shardload
