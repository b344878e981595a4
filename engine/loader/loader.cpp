// Loader and LoadedCheckpoint: wire the stages together, in one flow for
// plain and tensor-parallel loads (a plain load is rank 0 of world 1 under
// the identity plan):
//   plan (read once per source, cached) -> selection -> slices (tp_load.h)
//   -> layout (library-owned memory) or caller destinations -> strided
//   segments -> FileTable -> read plan -> OpQueue -> workers (oneTBB)
//   -> IoBackend -> padding zeroed; LoadOptions::verify (integrity/) hashes
//   alongside, told by the workers which bytes are in place (DeliveryObserver).
// LoadOptions::dtype takes the same items through ReadConverted's bounded
// staging instead of the read plan (convert/, loader/convert_load.h).
// std::bad_alloc is caught here, at the API boundary (kResourceExhausted).
// Thread-compatible: one Load/Reload/LoadInto at a time per Loader.
#include "shardload/loader.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <tbb/info.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include "buffers/fault_in_policy.h"
#include "buffers/mapped_memory.h"
#include "convert/convert.h"
#include "convert/converting_read.h"
#include "coop/session.h"
#include "device/device_memory.h"
#include "device/waves.h"
#include "integrity/loaded_hash.h"
#include "io/capabilities.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "io/io_backend.h"
#include "io/mapped_read.h"
#include "io/op_queue.h"
#include "io/pread_backend.h"
#include "io/residency.h"
#include "io/uring_backend.h"
#include "loader/backend_name.h"
#include "loader/backend_override.h"
#include "loader/cancel_watch.h"
#include "loader/convert_load.h"
#include "loader/coop_load.h"
#include "loader/device_load.h"
#include "loader/tp_load.h"
#include "plan/read_planner.h"

namespace shardload {


namespace {

constexpr std::uint64_t kProgressStep = 64ULL << 20;
// Library-owned tensors keep their file alignment modulo this (buffered mode).
constexpr std::uint64_t kBufferedArenaAlignment = 64;

alignas(64) std::byte kNoBytes[64];  // data() of empty tensors without an arena

// Hand-off edges that ThreadSanitizer can see (oneTBB's own synchronization
// is in an uninstrumented library): the tasks are built first (defer), then
// this counter is released, then they are spawned; each task acquires it
// before touching anything, and releases `finished` when done.
std::atomic<std::uint64_t> g_handoff{0};

Error ResourceExhausted() {
  return MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory");
}

Error CancelledByCaller() {
  return MakeError(ErrorCode::kCancelled, "", "", "cancelled by the caller");
}

// kCancelled once OPTIONS' token is cancelled: checked between the phases of
// a load (open, plan, read).
Status CheckCancel(const LoadOptions& options) {
  if (options.cancel && options.cancel->cancelled()) return CancelledByCaller();
  return {};
}

Error Invalid(std::string tensor, std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", std::move(tensor), std::move(detail));
}

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

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One worker's share, with everything it may throw turned into a Status.
Status RunWorker(const IoBackend& backend, WorkerOps ops, const ExecContext& ctx,
                 WorkerStats& stats) {
  try {
    return backend.Execute(ops, ctx, stats);
  } catch (const std::bad_alloc&) {
    SignalStop(ctx, stats);
    return ResourceExhausted();
  } catch (...) {
    SignalStop(ctx, stats);
    return MakeError(ErrorCode::kInternal, "", "", "unexpected exception in a load worker");
  }
}

}  // namespace

struct LoadedCheckpoint::Impl {
  MappedMemory arena;
  DeviceBuffer device_memory;  // instead of the arena when device is CUDA
  Device device;
  std::vector<LoadedTensor> tensors;  // sorted by name
  std::vector<Window> windows;        // regions of the arena (see tp_load.h)
  LoadStats stats;
  TpContext context;                  // the rank and plan it was loaded for (Reload keeps it)

  std::span<std::byte> DeviceSpan() const { return {device_memory.data(), device_memory.size()}; }
};

struct Loader::Impl {
  // At most oneTBB's limit of threads run at once (by default one per CPU);
  // the plan still has `n` worker lists, run as `n` tasks.
  Impl(Checkpoint c, LoadOptions o, unsigned n)
      : checkpoint(std::move(c)),
        options(std::move(o)),
        threads(n),
        arena(std::min(static_cast<int>(n), tbb::info::default_concurrency())) {}

  // The plan SOURCE names, read and parsed on first use, then cached.
  Result<std::shared_ptr<const tp::Plan>> CachedPlan(const PlanSource& source);
  Result<TpContext> Context(const TensorParallel& tp);
  Result<std::vector<TpItem>> SliceSelection(const TpContext& context,
                                             const Selection& selection) const;
  // The slice of the tensor NAME, which must be loaded by CONTEXT's rank and
  // have SIZE bytes (and, when given, DTYPE and SHAPE).
  Result<TpItem> SliceNamed(const TpContext& context, const std::string& name,
                            std::uint64_t size, const LoadedTensor* like) const;
  // Opens the shards holding TENSORS' bytes (for O_DIRECT, their alignment).
  Result<FileTable> OpenFiles(std::span<const TensorInfo* const> tensors) const;
  std::uint64_t ArenaAlignment(const FileTable& files) const;
  PlanOptions PlanOptionsFor(const FileTable& files, std::span<const Window> windows) const;
  // The plan of a load, once residency has marked each segment (the one
  // MarkResidency call of the loader).
  struct MarkedPlan {
    ReadPlan plan;
    ModeReport mode;
  };
  Result<MarkedPlan> PlanMarked(FileTable& files, std::span<const Segment> segments,
                                std::span<const Window> windows) const;
  // Reads ITEMS into DATA (one address per item), then zeroes their padding;
  // tells OBSERVER (may be null) which bytes are in place as reads finish.
  // OWNED: library-owned device memory of a device load (cuFile registers it).
  Result<LoadStats> Run(FileTable& files, std::span<const TpItem> items,
                        std::span<std::byte* const> data, std::span<const Window> windows,
                        FaultInPolicy* fault_in, DeliveryObserver* observer,
                        std::span<std::byte> owned = {});
  Result<LoadStats> Execute(FileTable& files, std::span<const Segment> segments,
                            std::span<const Window> windows,
                            std::span<const TensorInfo* const> tensors,
                            FaultInPolicy* fault_in, std::span<const DeviceTensor> local,
                            DeliveryObserver* observer, std::span<std::byte> owned);
  Result<LoadStats> ExecuteHost(FileTable& files, std::span<const Segment> segments,
                                std::span<const Window> windows,
                                std::span<const TensorInfo* const> tensors,
                                FaultInPolicy* fault_in, const ProgressFn& progress,
                                DeliveryObserver* observer);
  // LoadOptions::cooperate: SEGMENTS read with the node's other members
  // through `coop` (coop/session.h): this member's share of the node's bytes
  // into shared staging, its own bytes copied out (or, when the leader finds
  // them in the page cache, read as by Execute).
  Result<LoadStats> ExecuteCooperative(FileTable& files, std::span<const Segment> segments,
                                       std::span<const Window> windows,
                                       std::span<const TensorInfo* const> tensors,
                                       FaultInPolicy* fault_in,
                                       std::span<const DeviceTensor> local,
                                       std::span<std::byte> owned);
  // The cooperative load of SEGMENTS (coop/session.h): copies out of
  // staging go through SINK; READ_OWN reads some of SEGMENTS alone when the
  // leader finds them in the page cache; SHARE: ReadRequest::share.
  Result<LoadStats> RunCooperative(
      std::span<const Segment> segments, coop::CopySink& sink,
      const std::function<Result<LoadStats>(std::span<const Segment>)>& read_own, bool share);
  // Runs BODY (a load) as one cooperative load with the group of
  // LoadOptions::cooperate, if any: meets the others first (they must agree
  // on IDENTITY), sets `coop` for Run, and tells them if BODY fails.
  template <typename Body>
  auto Cooperating(const std::function<coop::Identity()>& identity, Body&& body)
      -> decltype(body());
  Result<std::byte*> AllocateOwned(LoadedCheckpoint::Impl& impl, std::uint64_t size) const;
  void RunWorkers(const IoBackend& backend, const ReadPlan& plan, OpQueue& queue,
                  const ExecContext& ctx, std::vector<WorkerStats>& stats,
                  std::vector<Status>& status);
  std::optional<Error> FirstError(const ReadPlan& plan, const std::vector<WorkerStats>& stats,
                                  const std::vector<Status>& status,
                                  std::span<const TensorInfo* const> tensors) const;
  LoadStats SumStats(const IoBackend& backend, const MarkedPlan& marked,
                     const std::vector<WorkerStats>& stats) const;
  Result<RankPlan> PlanItems(const TpContext& context, std::span<const TpItem> items,
                             FileTable& files) const;
  Result<std::vector<RankPlan>> PlanRanks(const Selection& selection, const PlanSource& plan,
                                          unsigned world, unsigned first, unsigned last);
  Result<LoadedCheckpoint> Load(const Selection& selection, const TensorParallel& tp);
  // LoadOptions::verify: starts checking the shards ITEMS are read from
  // against the manifest (integrity/loaded_hash.h), while the load runs:
  // from DATA (host memory) where an item is a whole tensor's unchanged
  // bytes; else (DATA empty, a slice, or a device load) by reading its shard
  // again. Null when no check is asked for.
  Result<std::unique_ptr<LoadVerifier>> StartVerify(std::span<const TpItem> items,
                                                    std::span<std::byte* const> data) const;
  // After the reads succeeded: the check's verdict, in STATS.verified.
  static Status FinishVerify(LoadVerifier* verifier, LoadStats& stats);
  // LoadOptions::dtype: ITEMS in fresh memory of the converted sizes, read
  // and converted through ReadConverted's bounded staging (convert/).
  Result<LoadedCheckpoint> LoadConverted(std::span<const TpItem> items, TpContext context,
                                         std::chrono::steady_clock::time_point start);
  Status Reload(LoadedCheckpoint& loaded);
  Result<LoadStats> LoadInto(std::span<const Destination> destinations,
                             const TensorParallel& tp);

  Checkpoint checkpoint;
  LoadOptions options;
  unsigned threads;
  bool use_uring = false;
  std::string backend_reason;
  tbb::task_arena arena;
  UringBackend uring;
  PreadBackend pread;
  std::shared_ptr<const CudaRuntime> cuda;  // set when options.device is CUDA
  GdsState gds;                             // cuFile, or why a --gds load is staged
  coop::Session* coop = nullptr;            // during a cooperative load
  // Plans read so far, by source (a few per Loader at most).
  std::vector<std::pair<PlanSource, std::shared_ptr<const tp::Plan>>> plans;
};

// --- LoadedCheckpoint --------------------------------------------------------

LoadedCheckpoint::LoadedCheckpoint() = default;
LoadedCheckpoint::LoadedCheckpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoadedCheckpoint::LoadedCheckpoint(LoadedCheckpoint&&) noexcept = default;
LoadedCheckpoint& LoadedCheckpoint::operator=(LoadedCheckpoint&&) noexcept = default;
LoadedCheckpoint::~LoadedCheckpoint() = default;

const std::vector<LoadedTensor>& LoadedCheckpoint::tensors() const {
  static const std::vector<LoadedTensor> kNone;
  return impl_ ? impl_->tensors : kNone;
}

const LoadedTensor* LoadedCheckpoint::Find(std::string_view name) const {
  const std::vector<LoadedTensor>& all = tensors();
  auto it = std::lower_bound(all.begin(), all.end(), name,
                             [](const LoadedTensor& t, std::string_view n) { return t.name < n; });
  return it != all.end() && it->name == name ? &*it : nullptr;
}

const LoadStats& LoadedCheckpoint::stats() const {
  static const LoadStats kNone;
  return impl_ ? impl_->stats : kNone;
}

Device LoadedCheckpoint::device() const { return impl_ ? impl_->device : Device(); }

// --- Loader::Impl ------------------------------------------------------------

Result<FileTable> Loader::Impl::OpenFiles(std::span<const TensorInfo* const> tensors) const {
  const std::vector<ShardInfo>& shards = checkpoint.shards();
  auto needed = std::make_unique<bool[]>(shards.size());
  for (const TensorInfo* t : tensors) {
    if (t->size > 0) needed[t->shard] = true;
  }
  return FileTable::Open(checkpoint, std::span<const bool>(needed.get(), shards.size()),
                         options.mode);
}

// Library-owned memory is laid out for O_DIRECT unless every read is buffered
// (for cuFile's 4 KiB grid with a GDS session).
std::uint64_t Loader::Impl::ArenaAlignment(const FileTable& files) const {
  // A cooperative load maps tensors every member needs from the node's one
  // copy, whole pages at a time: whole tensors keep their file's page offset.
  if (options.cooperate.group) return std::max<std::uint64_t>(files.alignment(), 4096);
  if (options.mode == IoMode::kBuffered) return kBufferedArenaAlignment;
  // cuFile reads land in place on 4 KiB boundaries of file and device.
  if (gds.session) return std::max(files.alignment(), kGdsAlignment);
  return files.alignment();
}

// The read planner's options for this Loader's LoadOptions (which segments
// are read with O_DIRECT is Segment::direct, set by MarkResidency).
PlanOptions Loader::Impl::PlanOptionsFor(const FileTable& files,
                                         std::span<const Window> windows) const {
  PlanOptions plan_options;
  plan_options.chunk_size = options.chunk_size;
  plan_options.workers = threads;
  plan_options.alignment = std::max<std::uint64_t>(files.alignment(), 1);
  plan_options.windows = windows;
  plan_options.strategy = options.read_strategy;
  plan_options.max_over_read = options.max_over_read;
  plan_options.cost = options.cost_model;
  return plan_options;
}

Result<Loader::Impl::MarkedPlan> Loader::Impl::PlanMarked(FileTable& files,
                                                          std::span<const Segment> segments,
                                                          std::span<const Window> windows) const {
  std::vector<Segment> marked(segments.begin(), segments.end());
  auto mode = MarkResidency(marked, files, options.mode);
  if (!mode) return std::move(mode).error();
  auto plan = PlanReads(marked, PlanOptionsFor(files, windows));
  if (!plan) return std::move(plan).error();
  return MarkedPlan{std::move(*plan), std::move(*mode)};
}

// The one place a load goes to a device: with a CUDA device, SEGMENTS point
// into device memory (LOCAL: the local tensors, tag = index) and are read in
// waves through pinned staging (device/waves.h), their aligned O_DIRECT
// parts by cuFile with --gds (loader/device_load.h); else they are read in
// place.
Result<LoadStats> Loader::Impl::Execute(FileTable& files, std::span<const Segment> segments,
                                        std::span<const Window> windows,
                                        std::span<const TensorInfo* const> tensors,
                                        FaultInPolicy* fault_in,
                                        std::span<const DeviceTensor> local,
                                        DeliveryObserver* observer,
                                        std::span<std::byte> owned) {
  if (!cuda) {
    return ExecuteHost(files, segments, windows, tensors, fault_in, options.progress, observer);
  }
  return LoadThroughDevice(DeviceLoad{cuda, &gds, &files, threads, owned}, options, local,
                           segments,
                           [&](std::span<const Segment> wave, const ProgressFn& progress) {
                             return ExecuteHost(files, wave, {}, tensors, nullptr, progress,
                                                nullptr);
                           });
}

// Plans `segments`, runs the plan on `threads` workers and sums their stats.
Result<LoadStats> Loader::Impl::ExecuteHost(FileTable& files, std::span<const Segment> segments,
                                            std::span<const Window> windows,
                                            std::span<const TensorInfo* const> tensors,
                                            FaultInPolicy* fault_in, const ProgressFn& progress,
                                            DeliveryObserver* observer) {
  if (Status s = CheckCancel(options); !s) return std::move(s).error();
  auto marked = PlanMarked(files, segments, windows);
  if (!marked) return std::move(marked).error();
  const ReadPlan* plan = &marked->plan;
  auto mappings = ShardMappings::Map(files, plan->ops);  // nothing unless reads are mapped
  if (!mappings) return std::move(mappings).error();

  std::atomic<bool> stop{false};
  CancelWatch watch(options.cancel.get(), &stop);
  ProgressMeter meter(plan->bytes_delivered, kProgressStep, progress);
  ExecContext ctx;
  ctx.files = &files;
  ctx.stop = &stop;
  ctx.progress = &meter;
  ctx.observer = observer;
  ctx.queue_depth = options.queue_depth;
  ctx.alignment = files.alignment();
  ctx.staging_size = plan->staging_size;
  ctx.scatter = plan->scatter;
  ctx.mappings = &*mappings;
  ctx.reads = plan->reads;
  ctx.prefault = options.prefault;
  ctx.arena_fault_in = fault_in;
  ctx.allow_fallback = options.backend == Backend::kAuto;
  const IoBackend* chosen = ScopedBackendOverride::Current();  // null but in tests
  if (chosen == nullptr) chosen = use_uring ? static_cast<const IoBackend*>(&uring) : &pread;
  const IoBackend& backend = *chosen;

  OpQueue queue(plan->ops, plan->bounds);
  std::vector<WorkerStats> stats(threads);
  std::vector<Status> status(threads);
  RunWorkers(backend, *plan, queue, ctx, stats, status);
  if (Status s = CheckCancel(options); !s) return std::move(s).error();
  if (auto error = FirstError(*plan, stats, status, tensors)) return std::move(*error);
  return SumStats(backend, *marked, stats);
}

Result<LoadStats> Loader::Impl::ExecuteCooperative(FileTable& files,
                                                   std::span<const Segment> segments,
                                                   std::span<const Window> windows,
                                                   std::span<const TensorInfo* const> tensors,
                                                   FaultInPolicy* fault_in,
                                                   std::span<const DeviceTensor> local,
                                                   std::span<std::byte> owned) {
  auto read_own = [&](std::span<const Segment> own) {
    return Execute(files, own, windows, tensors, fault_in, local, nullptr, owned);
  };
  if (cuda) {  // copies out of staging go to this member's device
    auto sink = CoopDeviceSink::Start(cuda, options.device_streams, local);
    if (!sink) return std::move(sink).error();
    auto stats = RunCooperative(segments, **sink, read_own, false);
    if (stats && (*sink)->attached()) {
      stats->device = DeviceName(options.device);
      stats->transfer = (*sink)->Describe();
    }
    return stats;
  }
  auto sink = coop::HostSink(fault_in == nullptr ? std::function<void(std::byte*, std::size_t)>()
                                                 : [fault_in](std::byte* dst, std::size_t n) {
                                                     fault_in->BeforeRead(dst, n);
                                                   });
  // Library-owned host memory: what every member needs whole may be mapped
  // from the node's one copy.
  return RunCooperative(segments, *sink, read_own, fault_in != nullptr);
}

Result<LoadStats> Loader::Impl::RunCooperative(
    std::span<const Segment> segments, coop::CopySink& sink,
    const std::function<Result<LoadStats>(std::span<const Segment>)>& read_own, bool share) {
  // A member reads its slots from any shard the node needs.
  std::vector<const TensorInfo*> all;
  all.reserve(checkpoint.tensors().size());
  for (const TensorInfo& t : checkpoint.tensors()) all.push_back(&t);
  auto every = OpenFiles(all);
  if (!every) return std::move(every).error();
  coop::ReadRequest request{segments, every->alignment(), options.mode, ShardSizes(checkpoint)};
  request.share = share;
  std::uint64_t total = 0;
  for (const Segment& s : segments) total += s.length * s.count;
  ProgressMeter meter(total, kProgressStep, options.progress);
  coop::Executor exec;
  exec.read = [&](std::span<const Segment> slot, std::span<const Window> staging) {
    return ExecuteHost(*every, slot, staging, all, nullptr, {}, nullptr);
  };
  exec.read_own = read_own;
  exec.sink = &sink;
  exec.copied = [&meter](std::uint64_t n) { meter.Add(n); };
  return coop->Run(request, exec);
}

template <typename Body>
auto Loader::Impl::Cooperating(const std::function<coop::Identity()>& identity, Body&& body)
    -> decltype(body()) {
  using R = decltype(body());
  if (!options.cooperate.group) return body();
  std::atomic<bool> stop{false};
  CancelWatch watch(options.cancel.get(), &stop);
  auto session = coop::Session::Start(*options.cooperate.group, options.cooperate, identity(),
                                      ShardPaths(checkpoint), &stop);
  if (!session) {
    if (Status s = CheckCancel(options); !s) return R(std::move(s).error());
    return R(std::move(session).error());
  }
  coop = session->get();
  R result = [&]() -> R {
    try {
      return body();
    } catch (const std::bad_alloc&) {
      return R(ResourceExhausted());
    }
  }();
  coop = nullptr;
  if (!result) {
    (*session)->Fail(result.error());
  } else if (!(*session)->done()) {  // it never read with the others
    Error e = MakeError(ErrorCode::kInternal, "", "", "the load did not reach its reads");
    (*session)->Fail(e);
    result = R(std::move(e));
  }
  (*session)->Finish();
  return result;
}

// One oneTBB task per worker with a non-empty share, in this Loader's
// task_arena; the workers take their ops from `queue`.
void Loader::Impl::RunWorkers(const IoBackend& backend, const ReadPlan& plan, OpQueue& queue,
                              const ExecContext& ctx, std::vector<WorkerStats>& stats,
                              std::vector<Status>& status) {
  std::atomic<unsigned> finished{0};
  arena.execute([&] {
    tbb::task_group group;
    std::vector<tbb::task_handle> tasks;
    for (unsigned w = 0; w < threads; ++w) {
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
std::optional<Error> Loader::Impl::FirstError(const ReadPlan& plan,
                                              const std::vector<WorkerStats>& stats,
                                              const std::vector<Status>& status,
                                              std::span<const TensorInfo* const> tensors) const {
  int first = -1;
  unsigned errors = 0;
  for (unsigned w = 0; w < threads; ++w) {
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

LoadStats Loader::Impl::SumStats(const IoBackend& backend, const MarkedPlan& marked,
                                 const std::vector<WorkerStats>& stats) const {
  const ReadPlan& plan = marked.plan;
  LoadStats out;
  out.threads = threads;
  out.mode = options.mode;
  out.mode_note = marked.mode.note;
  out.backend = BackendOf(backend);
  out.backend_reason = backend_reason;
  unsigned fell_back = 0, busy = 0;
  for (unsigned w = 0; w < threads; ++w) {
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

// --- Loader::Impl: one flow for plain and tensor-parallel loads ------------------

namespace {

// Fake, never dereferenced, base address for planning reads without memory:
// aligned to any O_DIRECT alignment.
std::byte* const kPlanningBase = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);

std::vector<const TensorInfo*> Sources(std::span<const TpItem> items) {
  std::vector<const TensorInfo*> sources;
  sources.reserve(items.size());
  for (const TpItem& item : items) sources.push_back(item.source);
  return sources;
}

// Each item's address from BASE under LAYOUT, and the layout's windows.
std::vector<std::byte*> Place(std::span<const TpItem> items, const LoadLayout& layout,
                              std::byte* base, std::vector<Window>& windows) {
  std::vector<std::byte*> data(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    data[i] = items[i].slice.size > 0 ? base + layout.position[i] : base;
  }
  windows.reserve(windows.size() + layout.regions.size());
  for (const ArenaLayout::Region& r : layout.regions) {
    windows.push_back(Window{base + r.begin, base + r.end});
  }
  return data;
}

std::vector<Segment> MakeSegments(std::span<const TpItem> items,
                                  std::span<std::byte* const> data) {
  std::vector<Segment> segments;
  segments.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    AppendTpSegments(items[i], data[i], static_cast<std::uint32_t>(i), segments);
  }
  return segments;
}

// True when ITEM is its whole tensor, byte for byte as in the file (a plain
// load, or a replicated tensor): its loaded bytes can be hashed in place.
bool IsWhole(const TpItem& item) {
  const tp::LocalSlice& slice = item.slice;
  if (slice.size != item.source->size || slice.zero_fill) return false;
  if (slice.size == 0) return true;
  if (slice.segments.size() != 1) return false;
  const tp::Segment& s = slice.segments.front();
  return s.src_offset == 0 && s.dst_offset == 0 && s.count * s.length == slice.size &&
         (s.count == 1 || (s.src_stride == s.length && s.dst_stride == s.length));
}

std::string RankText(const TpContext& context) {
  return "rank " + std::to_string(context.rank) + " of " + std::to_string(context.world);
}

}  // namespace

Result<std::shared_ptr<const tp::Plan>> Loader::Impl::CachedPlan(const PlanSource& source) {
  for (const auto& [key, plan] : plans) {
    if (key == source) return plan;
  }
  auto plan = LoadPlan(checkpoint, source);
  if (!plan) return std::move(plan).error();
  plans.emplace_back(source, *plan);
  return plan;
}

Result<TpContext> Loader::Impl::Context(const TensorParallel& tp) {
  if (Status s = CheckRank(tp.plan, tp.rank, tp.world); !s) return std::move(s).error();
  auto plan = CachedPlan(tp.plan);
  if (!plan) return std::move(plan).error();
  return TpContext{std::move(*plan), tp.rank, tp.world};
}

Result<std::vector<TpItem>> Loader::Impl::SliceSelection(const TpContext& context,
                                                         const Selection& selection) const {
  auto selected = Select(checkpoint, selection);
  if (!selected) return std::move(selected).error();
  return SliceSelected(context, checkpoint, *selected);
}

Result<TpItem> Loader::Impl::SliceNamed(const TpContext& context, const std::string& name,
                                        std::uint64_t size, const LoadedTensor* like) const {
  const TensorInfo* t = checkpoint.Find(name);
  if (t == nullptr) {
    return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), name,
                     "no tensor of this name in the checkpoint");
  }
  auto slice = SliceOne(context, *t, FindIn(checkpoint));
  if (!slice) return std::move(slice).error();
  if (!slice->load) {
    return Invalid(name, RankText(context) + " does not load this tensor (" + slice->rule + ")");
  }
  if (like != nullptr && (like->dtype != t->dtype || like->shape != slice->shape)) {
    return Invalid(name, "Reload: dtype or shape differs from the loaded tensor");
  }
  if (slice->size != size) {
    return Invalid(name, "destination holds " + std::to_string(size) + " bytes; " +
                             RankText(context) + " gets " + std::to_string(slice->size) +
                             (slice->rule.empty() ? "" : " (" + slice->rule + ")"));
  }
  return TpItem{t, std::move(*slice)};
}

// SIZE bytes of library-owned memory for IMPL: a huge-page arena, or one
// device allocation for a CUDA load. Returns the base (kNoBytes when empty).
Result<std::byte*> Loader::Impl::AllocateOwned(LoadedCheckpoint::Impl& impl,
                                               std::uint64_t size) const {
  impl.device = options.device;
  if (cuda) {
    auto memory = DeviceBuffer::Allocate(cuda, size);
    if (!memory) return std::move(memory).error();
    impl.device_memory = std::move(*memory);
    return impl.device_memory.data() != nullptr ? impl.device_memory.data() : kNoBytes;
  }
  auto memory = MappedMemory::Map(size, options.huge_pages);
  if (!memory) return std::move(memory).error();
  impl.arena = std::move(*memory);
  return impl.arena.data() != nullptr ? impl.arena.data() : kNoBytes;
}

Result<LoadStats> Loader::Impl::Run(FileTable& files, std::span<const TpItem> items,
                                    std::span<std::byte* const> data,
                                    std::span<const Window> windows, FaultInPolicy* fault_in,
                                    DeliveryObserver* observer, std::span<std::byte> owned) {
  std::vector<Segment> segments = MakeSegments(items, data);
  auto stats = coop != nullptr
                   ? ExecuteCooperative(files, segments, windows, Sources(items), fault_in,
                                        LocalTensors(items, data), owned)
                   : Execute(files, segments, windows, Sources(items), fault_in,
                             LocalTensors(items, data), observer, owned);
  if (!stats) return std::move(stats).error();
  if (!cuda) {  // device loads zero the padding in staging
    for (std::size_t i = 0; i < items.size(); ++i) ZeroPadding(items[i].slice, data[i]);
  }
  stats->tensors = items.size();
  return stats;
}

Result<LoadedCheckpoint> Loader::Impl::Load(const Selection& selection,
                                            const TensorParallel& tp) {
  auto start = std::chrono::steady_clock::now();
  auto context = Context(tp);
  if (!context) return std::move(context).error();
  auto items = SliceSelection(*context, selection);
  if (!items) return std::move(items).error();
  if (Status s = CheckCancel(options); !s) return std::move(s).error();
  if (options.dtype) return LoadConverted(*items, std::move(*context), start);
  auto files = OpenFiles(Sources(*items));
  if (!files) return std::move(files).error();
  LoadLayout layout = LayOut(*items, ArenaAlignment(*files));
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  auto base = AllocateOwned(*impl, layout.size);
  if (!base) return std::move(base).error();
  impl->context = std::move(*context);
  std::vector<std::byte*> data = Place(*items, layout, *base, impl->windows);
  impl->tensors.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    const TpItem& item = (*items)[i];
    impl->tensors.push_back(LoadedTensor{item.source->name, item.source->dtype, item.slice.shape,
                                         {data[i], item.slice.size}});
  }
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  auto verifier = StartVerify(*items, data);  // dropped (joined) before impl
  if (!verifier) return std::move(verifier).error();
  auto stats = Run(*files, *items, data, impl->windows, &fault_in, verifier->get(),
                   impl->DeviceSpan());
  if (!stats) return std::move(stats).error();
  if (Status s = FinishVerify(verifier->get(), *stats); !s) return std::move(s).error();
  impl->stats = std::move(*stats);
  impl->stats.memory = cuda ? DeviceMemory(options.device) : fault_in.Describe();
  impl->stats.seconds = SecondsSince(start);
  return LoadedCheckpoint(std::move(impl));
}

Result<std::unique_ptr<LoadVerifier>> Loader::Impl::StartVerify(
    std::span<const TpItem> items, std::span<std::byte* const> data) const {
  if (options.verify.empty()) return std::unique_ptr<LoadVerifier>();
  std::vector<LoadedBytes> loaded;
  loaded.reserve(items.size());
  // A cooperative load's bytes arrive through the node's staging, which the
  // verifier does not observe: its shards are hashed from storage.
  const bool observed = !cuda && !options.cooperate.group;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const bool whole = observed && !data.empty() && IsWhole(items[i]);
    loaded.push_back({items[i].source, whole ? data[i] : nullptr});
  }
  return LoadVerifier::Start(checkpoint, options.verify, loaded, threads);
}

Status Loader::Impl::FinishVerify(LoadVerifier* verifier, LoadStats& stats) {
  if (verifier == nullptr) return {};
  auto check = verifier->Finish();
  if (!check) return std::move(check).error();
  stats.verified = check->Describe();
  return {};
}

Result<LoadedCheckpoint> Loader::Impl::LoadConverted(std::span<const TpItem> items,
                                                     TpContext context,
                                                     std::chrono::steady_clock::time_point start) {
  if (cuda) return Invalid("", "dtype conversion loads to host memory only");
  if (options.mode == IoMode::kDirect) {
    return Invalid("", "dtype conversion does not support O_DIRECT reads");
  }
  ConvertedLayout layout = LayOutConverted(items, *options.dtype);
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  auto base = AllocateOwned(*impl, layout.total);
  if (!base) return std::move(base).error();
  impl->context = std::move(context);
  auto files = OpenFiles(Sources(items));
  if (!files) return std::move(files).error();
  std::vector<int> fds;
  std::vector<std::string> paths, names;
  for (std::uint32_t f = 0; f < checkpoint.shards().size(); ++f) {
    fds.push_back(files->fd(f, false));  // buffered: kDirect is refused above
    paths.push_back(checkpoint.shards()[f].path);
  }
  for (const TpItem& item : items) names.push_back(item.source->name);
  // Each item's segments from kPlanningBase, re-aimed at converted memory.
  std::vector<std::byte*> origin(items.size(), kPlanningBase);
  std::vector<ConvertSegment> converts =
      TranslateSegments(MakeSegments(items, origin), kPlanningBase, items, layout, *base);
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  auto before_write = [&fault_in](std::byte* dst, std::size_t n) { fault_in.BeforeRead(dst, n); };
  std::uint64_t converted_bytes = 0;
  for (const ConvertSegment& c : converts) {
    converted_bytes += c.count * (c.length / std::max(1u, DTypeBits(c.from) / 8)) *
                       std::max(1u, DTypeBits(c.to) / 8);
  }
  ProgressMeter meter(converted_bytes, kProgressStep, options.progress);
  auto after_write = [&meter](std::uint64_t n) { meter.Add(n); };
  auto verifier = StartVerify(items, {});  // re-reads, alongside the conversion
  if (!verifier) return std::move(verifier).error();
  auto read_alone = [&]() -> Result<LoadStats> {
    auto read = ReadConverted(converts, {threads, options.chunk_size, fds, paths, names,
                                         before_write, after_write});
    if (!read) return std::move(read).error();
    LoadStats out;
    out.bytes = read->bytes_written;
    out.bytes_read = read->bytes_read;
    out.bytes_buffered = read->bytes_read;
    out.read_ops = read->read_ops;
    out.backend_reason = "dtype conversion: pread through a bounded staging buffer per worker";
    return out;
  };
  Result<LoadStats> read = LoadStats{};
  if (coop != nullptr) {
    // Converted while copied out of the node's staging (whole elements:
    // staging pieces are cut on the 4 KiB grid).
    std::vector<Segment> segments = MakeSegments(items, origin);
    if (const Segment* odd = FirstUnaligned(segments, items)) {
      const TensorInfo& t = *items[odd->tag].source;
      return MakeError(ErrorCode::kUnsupported, checkpoint.shards()[t.shard].path, t.name,
                       "its bytes start at file offset " + std::to_string(t.offset) +
                           ", not on a " + std::string(DTypeName(t.dtype)) +
                           " element boundary: a cooperative load converts dtypes only of "
                           "element-aligned tensors; load alone (--no-cooperate)");
    }
    ConvertingSink sink(items, layout, *base, kPlanningBase, before_write);
    read = RunCooperative(segments, sink, [&](std::span<const Segment>) { return read_alone(); },
                          false);
    if (read) read->bytes = converted_bytes;
  } else {
    read = read_alone();
  }
  if (!read) return std::move(read).error();
  LoadStats stats = std::move(*read);
  if (Status s = FinishVerify(verifier->get(), stats); !s) return std::move(s).error();
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::byte* data = layout.size[i] > 0 ? *base + layout.position[i] : *base;
    impl->tensors.push_back(LoadedTensor{items[i].source->name, layout.dtype[i],
                                         items[i].slice.shape, {data, layout.size[i]}});
  }
  stats.tensors = items.size();
  stats.threads = threads;
  stats.mode = options.mode;
  if (coop == nullptr) stats.backend = Backend::kPread;
  stats.memory = "converted to " + std::string(DTypeName(*options.dtype)) + "; " +
                 fault_in.Describe();
  stats.seconds = SecondsSince(start);
  impl->stats = std::move(stats);
  return LoadedCheckpoint(std::move(impl));
}

Status Loader::Impl::Reload(LoadedCheckpoint& loaded) {
  auto start = std::chrono::steady_clock::now();
  LoadedCheckpoint::Impl* target = loaded.impl_.get();
  if (target == nullptr) return Invalid("", "Reload: the LoadedCheckpoint holds nothing");
  if (target->device != options.device) {
    return Invalid("", "Reload: the tensors are on " + DeviceName(target->device) +
                           ", this Loader loads to " + DeviceName(options.device));
  }
  std::vector<TpItem> items;
  std::vector<std::byte*> data;
  items.reserve(target->tensors.size());
  data.reserve(target->tensors.size());
  for (const LoadedTensor& lt : target->tensors) {
    auto item = SliceNamed(target->context, lt.name, lt.data.size(), &lt);
    if (!item) return std::move(item).error();
    items.push_back(std::move(*item));
    data.push_back(lt.data.data());
  }
  auto files = OpenFiles(Sources(items));
  if (!files) return std::move(files).error();
  auto verifier = StartVerify(items, data);
  if (!verifier) return std::move(verifier).error();
  auto stats = Run(*files, items, data, target->windows, nullptr, verifier->get(),
                   target->DeviceSpan());
  if (!stats) return std::move(stats).error();
  if (Status s = FinishVerify(verifier->get(), *stats); !s) return std::move(s).error();
  target->stats = std::move(*stats);
  target->stats.memory = cuda ? DeviceMemory(options.device) + ", reused"
                              : "reused (faulted in by the first load)";
  target->stats.seconds = SecondsSince(start);
  return {};
}

Result<LoadStats> Loader::Impl::LoadInto(std::span<const Destination> destinations,
                                         const TensorParallel& tp) {
  auto start = std::chrono::steady_clock::now();
  auto context = Context(tp);
  if (!context) return std::move(context).error();
  // The plan is checked against every named tensor (for every rank alike)
  // before a destination is.
  std::vector<const TensorInfo*> named;
  for (const Destination& d : destinations) {
    if (const TensorInfo* t = checkpoint.Find(d.name)) named.push_back(t);
  }
  if (auto all = SliceSelected(*context, checkpoint, named); !all) {
    return std::move(all).error();
  }
  std::vector<TpItem> items;
  std::vector<std::byte*> data;
  for (const Destination& d : destinations) {
    auto item = SliceNamed(*context, d.name, d.size, nullptr);
    if (!item) return std::move(item).error();
    if (d.data == nullptr && d.size > 0) return Invalid(d.name, "null destination");
    items.push_back(std::move(*item));
    data.push_back(static_cast<std::byte*>(d.data));
  }
  auto files = OpenFiles(Sources(items));
  if (!files) return std::move(files).error();
  auto stats = Run(*files, items, data, {}, nullptr, nullptr);
  if (!stats) return std::move(stats).error();
  stats->memory = "caller-provided";
  stats->seconds = SecondsSince(start);
  return stats;
}

// The read plan Load would make, without memory (kPlanningBase) and without
// reading: FILES are only open, for their O_DIRECT alignment.
Result<RankPlan> Loader::Impl::PlanItems(const TpContext& context, std::span<const TpItem> items,
                                         FileTable& files) const {
  LoadLayout layout = LayOut(items, ArenaAlignment(files));
  std::vector<Window> windows;
  std::vector<std::byte*> data = Place(items, layout, kPlanningBase, windows);
  std::vector<Segment> segments = MakeSegments(items, data);
  auto marked = PlanMarked(files, segments, windows);
  if (!marked) return std::move(marked).error();
  const ReadPlan* plan = &marked->plan;
  RankPlan out;
  out.rank = context.rank;
  out.world = context.world;
  out.bytes = plan->bytes_delivered;
  out.bytes_read = plan->bytes_requested;
  out.read_ops = plan->reads;
  out.tensors.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    // A tensor whose bytes ride in another tensor's coalesced read has no
    // reads of its own (its TagReads, or none at all, count zero).
    const TagReads reads = i < plan->tags.size() ? plan->tags[i] : TagReads{};
    PlannedTensor t = DescribeTp(items[i]);
    t.strategy = ReadStrategyName(reads.strategy);
    t.bytes_read = reads.bytes_read;
    t.read_ops = reads.read_ops;
    out.local_bytes += t.bytes;
    out.tensors.push_back(std::move(t));
  }
  return out;
}

// Ranks [FIRST, LAST) of WORLD from one plan, one selection and one opening
// of the shards (every shard any rank reads).
Result<std::vector<RankPlan>> Loader::Impl::PlanRanks(const Selection& selection,
                                                      const PlanSource& source, unsigned world,
                                                      unsigned first, unsigned last) {
  auto context = Context(TensorParallel{first, world, source});
  if (!context) return std::move(context).error();
  if (first >= last) return Invalid("", "PlanRanks: no rank to plan");
  auto selected = Select(checkpoint, selection);
  if (!selected) return std::move(selected).error();
  auto files = OpenFiles(*selected);
  if (!files) return std::move(files).error();
  auto matches = MatchSelected(*context, *selected);  // once for every rank
  if (!matches) return std::move(matches).error();
  std::vector<RankPlan> out;
  out.reserve(last - first);
  for (unsigned r = first; r < last; ++r) {
    context->rank = r;
    auto items = SliceSelected(*context, checkpoint, *selected, *matches);
    if (!items) return std::move(items).error();
    auto plan = PlanItems(*context, *items, *files);
    if (!plan) return std::move(plan).error();
    out.push_back(std::move(*plan));
  }
  return out;
}

// --- Loader ------------------------------------------------------------------

Result<Loader> Loader::Open(const std::string& path, LoadOptions options) {
  try {
    auto checkpoint = Checkpoint::Open(path);
    if (!checkpoint) return std::move(checkpoint).error();
    if (Status s = CheckCancel(options); !s) return std::move(s).error();
    return Open(std::move(*checkpoint), std::move(options));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<Loader> Loader::Open(Checkpoint checkpoint, LoadOptions options) {
  try {
    if (options.queue_depth == 0) return Invalid("", "queue_depth must be at least 1");
    if (options.chunk_size < kMinChunkSize) return Invalid("", "chunk_size must be at least 4 KiB");
    if (options.dtype && !IsConversionTarget(*options.dtype)) {
      return Invalid("", "dtype must be BF16, F16 or F32, not " +
                             std::string(DTypeName(*options.dtype)));
    }
    if (options.device.is_cuda() && options.staging_bytes < 2 * kStagingAlignment) {
      return Invalid("", "staging_bytes must be at least " +
                             std::to_string(2 * kStagingAlignment));
    }
    if (options.cooperate.group && options.cooperate.staging_bytes < (64ULL << 10)) {
      return Invalid("", "cooperation staging_bytes must be at least 65536");
    }
    if (options.device.is_cuda() && options.device_streams == 0) {
      return Invalid("", "device_streams must be at least 1");
    }
    const unsigned threads = options.threads == 0 ? OnlineCpus() : options.threads;
    bool use_uring = false;
    std::string reason;
    if (options.backend == Backend::kPread) {
      reason = "pread: forced by LoadOptions::backend";
    } else {
      Capabilities caps = ProbeCapabilities();
      if (caps.io_uring) {
        use_uring = true;
        reason = caps.io_uring_reason;
      } else if (options.backend == Backend::kIoUring) {
        return MakeError(ErrorCode::kUnsupported, "", "",
                         "io_uring requested but unusable: " + caps.io_uring_reason);
      } else {
        reason = "pread fallback: " + caps.io_uring_reason;
      }
    }
    std::shared_ptr<const CudaRuntime> cuda;
    if (options.device.is_cuda()) {
      auto runtime = CudaRuntime::Open(options.device.index);
      if (!runtime) return std::move(runtime).error();
      cuda = std::move(*runtime);
    }
    auto impl = std::make_unique<Impl>(std::move(checkpoint), std::move(options), threads);
    impl->use_uring = use_uring;
    impl->backend_reason = std::move(reason);
    impl->cuda = std::move(cuda);
    if (impl->cuda) impl->gds = OpenGds(impl->options);
    return Loader(std::move(impl));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Loader::Loader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

const Checkpoint& Loader::checkpoint() const { return impl_->checkpoint; }
const LoadOptions& Loader::options() const { return impl_->options; }

Result<LoadedCheckpoint> Loader::Load(const Selection& selection) {
  return Load(selection, TensorParallel{});
}

Status Loader::Reload(LoadedCheckpoint& loaded) {
  try {
    auto identity = [&] {
      const TpContext none;
      const TpContext& context = loaded.impl_ ? loaded.impl_->context : none;
      std::string names;
      for (const LoadedTensor& t : loaded.tensors()) names += t.name + ",";
      return JobIdentity(impl_->checkpoint, impl_->options, context.rank, context.world, nullptr,
                         "reload", std::to_string(loaded.tensors().size()) + " tensors, " +
                                       SelectionDigest(names));
    };
    return impl_->Cooperating(identity, [&] { return impl_->Reload(loaded); });
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadStats> Loader::LoadInto(std::span<const Destination> destinations) {
  return LoadInto(destinations, TensorParallel{});
}

Result<RankPlan> Loader::Plan(const Selection& selection, const TensorParallel& tp) {
  try {
    if (Status s = CheckRank(tp.plan, tp.rank, tp.world); !s) return std::move(s).error();
    auto plans = impl_->PlanRanks(selection, tp.plan, tp.world, tp.rank, tp.rank + 1);
    if (!plans) return std::move(plans).error();
    return std::move(plans->front());
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<std::vector<RankPlan>> Loader::PlanRanks(const Selection& selection,
                                                const PlanSource& plan, unsigned world) {
  try {
    return impl_->PlanRanks(selection, plan, world, 0, world);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadedCheckpoint> Loader::Load(const Selection& selection, const TensorParallel& tp) {
  try {
    auto identity = [&] {
      return JobIdentity(impl_->checkpoint, impl_->options, tp.rank, tp.world, &tp.plan, "load",
                         SelectionText(selection));
    };
    return impl_->Cooperating(identity, [&] { return impl_->Load(selection, tp); });
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadStats> Loader::LoadInto(std::span<const Destination> destinations,
                                   const TensorParallel& tp) {
  try {
    auto identity = [&] {
      std::string names;
      for (const Destination& d : destinations) names += d.name + ",";
      return JobIdentity(impl_->checkpoint, impl_->options, tp.rank, tp.world, &tp.plan,
                         "load_into", std::to_string(destinations.size()) + " tensors, " +
                                          SelectionDigest(names));
    };
    return impl_->Cooperating(identity, [&] { return impl_->LoadInto(destinations, tp); });
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

}  // namespace shardload
