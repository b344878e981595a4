// Loader and LoadedCheckpoint: wire the stages together.
//   selection -> arena layout (library-owned memory) or caller destinations
//   -> segments -> FileTable -> read plan -> OpQueue -> workers (oneTBB)
//   -> IoBackend.
// std::bad_alloc is caught here, at the API boundary (kResourceExhausted).
// Thread-compatible: one Load/Reload/LoadInto at a time per Loader.
#include "shardload/loader.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
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
#include "io/capabilities.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "io/io_backend.h"
#include "io/op_queue.h"
#include "io/pread_backend.h"
#include "io/uring_backend.h"
#include "convert/convert.h"
#include "convert/converting_read.h"
#include "integrity/loaded_hash.h"
#include "loader/backend_override.h"
#include "loader/convert_load.h"
#include "loader/tp_load.h"
#include "plan/arena_layout.h"
#include "plan/read_planner.h"

namespace shardload {
namespace {

constexpr std::uint64_t kProgressStep = 64ULL << 20;
// Library-owned tensors keep their file alignment modulo this (buffered mode).
constexpr std::uint64_t kBufferedArenaAlignment = 64;

alignas(64) std::byte kNoBytes[64];

// Fake, never dereferenced, base address for planning reads without memory:
// aligned to any O_DIRECT alignment.
std::byte* const kPlanningBase = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);

// A converted load of whole tensors: one item and one segment per tensor.
std::vector<ConvertItem> WholeItems(std::span<const TensorInfo* const> tensors) {
  std::vector<ConvertItem> items;
  for (const TensorInfo* t : tensors) items.push_back(ConvertItem{t, t->shape, t->size});
  return items;
}

std::vector<Segment> WholeSegments(std::span<const TensorInfo* const> tensors) {
  std::vector<Segment> segments;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    segments.push_back(Segment{tensors[i]->shard, tensors[i]->offset, tensors[i]->size,
                               kPlanningBase, static_cast<std::uint32_t>(i)});
  }
  return segments;
}

// A converted load of a rank's slices: items and their segments.
std::pair<std::vector<ConvertItem>, std::vector<Segment>> TpConvertItems(
    std::span<const TpItem> slices) {
  std::vector<ConvertItem> items;
  std::vector<Segment> segments;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    items.push_back(ConvertItem{slices[i].source, slices[i].slice.shape, slices[i].slice.size});
    AppendTpSegments(slices[i], kPlanningBase, static_cast<std::uint32_t>(i), segments);
  }
  return {std::move(items), std::move(segments)};
}  // data() of empty tensors without an arena

// Hand-off edges that ThreadSanitizer can see (oneTBB's own synchronization
// is in an uninstrumented library): the tasks are built first (defer), then
// this counter is released, then they are spawned; each task acquires it
// before touching anything, and releases `finished` when done.
std::atomic<std::uint64_t> g_handoff{0};

Error ResourceExhausted() {
  return MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory");
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
  std::vector<LoadedTensor> tensors;  // sorted by name
  std::vector<Window> windows;        // regions of the arena (see arena_layout.h)
  LoadStats stats;
  std::shared_ptr<const TpContext> tp;  // set by a tensor-parallel load (Reload keeps it)
};

struct Loader::Impl {
  // At most oneTBB's limit of threads run at once (by default one per CPU);
  // the plan still has `n` worker lists, run as `n` tasks.
  Impl(Checkpoint c, LoadOptions o, unsigned n)
      : checkpoint(std::move(c)),
        options(std::move(o)),
        threads(n),
        arena(std::min(static_cast<int>(n), tbb::info::default_concurrency())) {}

  Result<FileTable> OpenFiles(std::span<const Segment> segments) const;
  Result<LoadStats> Execute(const FileTable& files, std::span<const Segment> segments,
                            std::span<const Window> windows,
                            std::span<const TensorInfo* const> tensors,
                            FaultInPolicy* fault_in);
  void RunWorkers(const IoBackend& backend, const ReadPlan& plan, OpQueue& queue,
                  const ExecContext& ctx, std::vector<WorkerStats>& stats,
                  std::vector<Status>& status);
  std::optional<Error> FirstError(const ReadPlan& plan, const std::vector<WorkerStats>& stats,
                                  const std::vector<Status>& status,
                                  std::span<const TensorInfo* const> tensors) const;
  // LoadOptions::verify: checks the shards this load read (integrity/loaded_hash.h);
  // data[i] holds tensors[i]'s file bytes unchanged, or is null.
  Status VerifyIfAsked(std::span<const TensorInfo* const> tensors,
                       std::span<const std::byte* const> data, LoadStats& stats) const;
  LoadStats SumStats(const IoBackend& backend, const ReadPlan& plan,
                     const std::vector<WorkerStats>& stats) const;
  Result<std::unique_ptr<LoadedCheckpoint::Impl>> MakeArena(
      std::span<const TensorInfo* const> tensors, std::uint64_t alignment,
      std::vector<Segment>& segments) const;
  Result<LoadedCheckpoint> Load(const Selection& selection);
  // LoadOptions::dtype: `segments` place item `tag`'s bytes from kPlanningBase.
  Result<LoadedCheckpoint> LoadConverted(std::span<const ConvertItem> items,
                                         std::span<const Segment> segments,
                                         std::shared_ptr<const TpContext> tp);
  Status Reload(LoadedCheckpoint& loaded);
  Result<LoadStats> LoadInto(std::span<const Destination> destinations);
  // Tensor parallel (loader/tp_load.h).
  Result<TpSlices> SliceTp(const Selection& selection, const TensorParallel& tp) const;
  // A rank's slices, the files they read and their memory layout.
  struct TpPrepared {
    TpSlices slices;
    FileTable files;
    TpLayout layout;
  };
  Result<TpPrepared> PrepareTp(const Selection& selection, const TensorParallel& tp) const;
  Result<RankPlan> PlanTp(const Selection& selection, const TensorParallel& tp);
  Result<LoadedCheckpoint> LoadTp(const Selection& selection, const TensorParallel& tp);
  Result<TpItem> SliceOne(const TpContext& context, const std::string& name, std::uint64_t size,
                          const std::vector<std::uint64_t>* shape) const;
  Result<LoadStats> ExecuteTp(std::span<const TpItem> items, std::span<std::byte* const> data,
                              std::span<const Window> windows);
  Status ReloadTp(LoadedCheckpoint::Impl& target);
  Result<LoadStats> LoadIntoTp(std::span<const Destination> destinations,
                               const TensorParallel& tp);

  Checkpoint checkpoint;
  LoadOptions options;
  unsigned threads;
  bool use_uring = false;
  std::string backend_reason;
  tbb::task_arena arena;
  UringBackend uring;
  PreadBackend pread;
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

// --- Loader::Impl ------------------------------------------------------------

Result<FileTable> Loader::Impl::OpenFiles(std::span<const Segment> segments) const {
  const std::vector<ShardInfo>& shards = checkpoint.shards();
  std::vector<std::string> paths;
  paths.reserve(shards.size());
  for (const ShardInfo& s : shards) paths.push_back(s.path);
  auto needed = std::make_unique<bool[]>(shards.size());
  for (const Segment& seg : segments) {
    if (seg.length > 0) needed[seg.file] = true;
  }
  return FileTable::Open(paths, std::span<const bool>(needed.get(), shards.size()),
                         options.direct);
}

// Plans `segments`, runs the plan on `threads` workers and sums their stats.
Result<LoadStats> Loader::Impl::Execute(const FileTable& files, std::span<const Segment> segments,
                                        std::span<const Window> windows,
                                        std::span<const TensorInfo* const> tensors,
                                        FaultInPolicy* fault_in) {
  PlanOptions plan_options;
  plan_options.chunk_size = options.chunk_size;
  plan_options.workers = threads;
  plan_options.direct = options.direct;
  plan_options.alignment = files.alignment();
  plan_options.windows = windows;
  auto plan = PlanReads(segments, plan_options);
  if (!plan) return std::move(plan).error();

  std::atomic<bool> stop{false};
  ProgressMeter meter(plan->bytes_delivered, kProgressStep, options.progress);
  ExecContext ctx;
  ctx.files = &files;
  ctx.stop = &stop;
  ctx.progress = &meter;
  ctx.queue_depth = options.queue_depth;
  ctx.alignment = options.direct ? files.alignment() : 1;
  ctx.staging_size = plan->staging_size;
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
  if (auto error = FirstError(*plan, stats, status, tensors)) return std::move(*error);
  return SumStats(backend, *plan, stats);
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

LoadStats Loader::Impl::SumStats(const IoBackend& backend, const ReadPlan& plan,
                                 const std::vector<WorkerStats>& stats) const {
  LoadStats out;
  out.threads = threads;
  out.direct = options.direct;
  out.backend = backend.name();
  out.backend_reason = backend_reason;
  unsigned fell_back = 0, busy = 0;
  for (unsigned w = 0; w < threads; ++w) {
    const WorkerStats& ws = stats[w];
    out.bytes += ws.bytes_delivered;
    out.bytes_read += ws.bytes_read;
    out.read_ops += ws.read_ops;
    out.short_reads += ws.short_reads;
    out.retries += ws.retries;
    busy += plan.share(w).empty() ? 0 : 1;
    if (ws.fell_back) {
      ++fell_back;
      out.backend_reason += "; worker " + std::to_string(w) + ": " + ws.note;
    }
  }
  if (fell_back > 0 && fell_back == busy) out.backend = "pread";  // all of them
  return out;
}

Status Loader::Impl::VerifyIfAsked(std::span<const TensorInfo* const> tensors,
                                   std::span<const std::byte* const> data,
                                   LoadStats& stats) const {
  if (options.verify.empty()) return {};
  std::vector<LoadedBytes> loaded;
  for (std::size_t i = 0; i < tensors.size(); ++i) loaded.push_back({tensors[i], data[i]});
  auto check = VerifyLoad(checkpoint, options.verify, loaded, threads);
  if (!check) return std::move(check).error();
  stats.verified = check->Describe();
  return {};
}

// Lays the selected tensors out in a fresh arena (arena_layout.h) and points
// each segment at its tensor's place.
Result<std::unique_ptr<LoadedCheckpoint::Impl>> Loader::Impl::MakeArena(
    std::span<const TensorInfo* const> tensors, std::uint64_t alignment,
    std::vector<Segment>& segments) const {
  std::vector<ArenaItem> items(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    items[i] = ArenaItem{tensors[i]->shard, tensors[i]->offset, tensors[i]->size};
  }
  ArenaLayout layout = LayOutArena(items, alignment);
  auto memory = MappedMemory::Map(layout.size, options.huge_pages);
  if (!memory) return std::move(memory).error();

  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  impl->arena = std::move(*memory);
  std::byte* base = impl->arena.data() != nullptr ? impl->arena.data() : kNoBytes;
  impl->tensors.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = *tensors[i];
    std::byte* data = t.size > 0 ? base + layout.position[i] : base;
    impl->tensors.push_back(LoadedTensor{t.name, t.dtype, t.shape, {data, t.size}});
    segments[i].dst = data;
  }
  for (const ArenaLayout::Region& r : layout.regions) {
    impl->windows.push_back(Window{base + r.begin, base + r.end});
  }
  return impl;
}

Result<LoadedCheckpoint> Loader::Impl::Load(const Selection& selection) {
  auto start = std::chrono::steady_clock::now();
  auto selected = Select(checkpoint, selection);
  if (!selected) return std::move(selected).error();
  const std::vector<const TensorInfo*>& tensors = *selected;
  if (options.dtype) return LoadConverted(WholeItems(tensors), WholeSegments(tensors), nullptr);
  std::vector<Segment> segments(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    segments[i] = Segment{tensors[i]->shard, tensors[i]->offset, tensors[i]->size, nullptr,
                          static_cast<std::uint32_t>(i)};
  }
  auto files = OpenFiles(segments);
  if (!files) return std::move(files).error();
  auto impl = MakeArena(tensors, options.direct ? files->alignment() : kBufferedArenaAlignment,
                        segments);
  if (!impl) return std::move(impl).error();

  FaultInPolicy fault_in((*impl)->arena.data(), (*impl)->arena.size(), options.huge_pages);
  auto stats = Execute(*files, segments, (*impl)->windows, tensors, &fault_in);
  if (!stats) return std::move(stats).error();
  std::vector<const std::byte*> data;
  for (const LoadedTensor& t : (*impl)->tensors) data.push_back(t.data.data());
  if (Status s = VerifyIfAsked(tensors, data, *stats); !s) return std::move(s).error();
  LoadStats& out = (*impl)->stats;
  out = std::move(*stats);
  out.memory = fault_in.Describe();
  out.tensors = tensors.size();
  out.seconds = SecondsSince(start);
  return LoadedCheckpoint(std::move(*impl));
}

// Converted dtypes (LoadOptions::dtype): fresh memory of the converted
// sizes, filled through ReadConverted's bounded staging (convert/).
Result<LoadedCheckpoint> Loader::Impl::LoadConverted(std::span<const ConvertItem> items,
                                                     std::span<const Segment> segments,
                                                     std::shared_ptr<const TpContext> tp) {
  auto start = std::chrono::steady_clock::now();
  if (options.direct) return Invalid("", "dtype conversion does not support O_DIRECT reads");
  ConvertedLayout layout = LayOutConverted(items, *options.dtype);
  auto memory = MappedMemory::Map(layout.total, options.huge_pages);
  if (!memory) return std::move(memory).error();
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  impl->arena = std::move(*memory);
  impl->tp = std::move(tp);
  std::byte* base = impl->arena.data() != nullptr ? impl->arena.data() : kNoBytes;
  auto files = OpenFiles(segments);
  if (!files) return std::move(files).error();
  std::vector<int> fds;
  std::vector<std::string> paths, names;
  for (std::uint32_t f = 0; f < checkpoint.shards().size(); ++f) {
    fds.push_back(files->fd(f));
    paths.push_back(checkpoint.shards()[f].path);
  }
  std::vector<const TensorInfo*> sources;
  for (const ConvertItem& item : items) {
    names.push_back(item.source->name);
    sources.push_back(item.source);
  }
  std::vector<ConvertSegment> converts =
      TranslateSegments(segments, kPlanningBase, items, layout, base);
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  auto before_write = [&fault_in](std::byte* dst, std::size_t n) { fault_in.BeforeRead(dst, n); };
  auto read =
      ReadConverted(converts, {threads, options.chunk_size, fds, paths, names, before_write});
  if (!read) return std::move(read).error();
  LoadStats stats;
  std::vector<const std::byte*> unchanged(items.size(), nullptr);  // converted: re-read
  if (Status s = VerifyIfAsked(sources, unchanged, stats); !s) return std::move(s).error();
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::byte* data = layout.size[i] > 0 ? base + layout.position[i] : base;
    impl->tensors.push_back(
        LoadedTensor{items[i].source->name, layout.dtype[i], items[i].shape, {data, layout.size[i]}});
  }
  stats.tensors = items.size();
  stats.bytes = read->bytes_written;
  stats.bytes_read = read->bytes_read;
  stats.read_ops = read->read_ops;
  stats.threads = threads;
  stats.backend = "pread";
  stats.backend_reason = "dtype conversion: pread through a bounded staging buffer per worker";
  stats.memory = "converted to " + std::string(DTypeName(*options.dtype)) + "; " +
                 fault_in.Describe();
  stats.seconds = SecondsSince(start);
  impl->stats = std::move(stats);
  return LoadedCheckpoint(std::move(impl));
}

Status Loader::Impl::Reload(LoadedCheckpoint& loaded) {
  auto start = std::chrono::steady_clock::now();
  LoadedCheckpoint::Impl* target = loaded.impl();
  if (target == nullptr) return Invalid("", "Reload: the LoadedCheckpoint holds nothing");
  if (target->tp) return ReloadTp(*target);
  std::vector<const TensorInfo*> tensors;
  std::vector<Segment> segments;
  for (const LoadedTensor& lt : target->tensors) {
    const TensorInfo* t = checkpoint.Find(lt.name);
    if (t == nullptr) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), lt.name,
                       "Reload: tensor no longer in the checkpoint");
    }
    if (t->dtype != lt.dtype || t->shape != lt.shape || t->size != lt.data.size()) {
      return Invalid(lt.name, "Reload: dtype or shape differs from the loaded tensor");
    }
    segments.push_back(Segment{t->shard, t->offset, t->size, lt.data.data(),
                               static_cast<std::uint32_t>(tensors.size())});
    tensors.push_back(t);
  }
  auto files = OpenFiles(segments);
  if (!files) return std::move(files).error();
  auto stats = Execute(*files, segments, target->windows, tensors, nullptr);
  if (!stats) return std::move(stats).error();
  std::vector<const std::byte*> data;
  for (const Segment& seg : segments) data.push_back(seg.dst);
  if (Status s = VerifyIfAsked(tensors, data, *stats); !s) return std::move(s).error();
  target->stats = std::move(*stats);
  target->stats.memory = "reused (faulted in by the first load)";
  target->stats.tensors = tensors.size();
  target->stats.seconds = SecondsSince(start);
  return {};
}

Result<LoadStats> Loader::Impl::LoadInto(std::span<const Destination> destinations) {
  auto start = std::chrono::steady_clock::now();
  std::vector<const TensorInfo*> tensors;
  std::vector<Segment> segments;
  for (const Destination& d : destinations) {
    const TensorInfo* t = checkpoint.Find(d.name);
    if (t == nullptr) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), d.name,
                       "no tensor of this name in the checkpoint");
    }
    if (d.size != t->size) {
      return Invalid(d.name, "destination holds " + std::to_string(d.size) +
                                 " bytes; the tensor has " + std::to_string(t->size));
    }
    if (d.data == nullptr && d.size > 0) return Invalid(d.name, "null destination");
    segments.push_back(Segment{t->shard, t->offset, t->size, static_cast<std::byte*>(d.data),
                               static_cast<std::uint32_t>(tensors.size())});
    tensors.push_back(t);
  }
  auto files = OpenFiles(segments);
  if (!files) return std::move(files).error();
  auto stats = Execute(*files, segments, {}, tensors, nullptr);
  if (!stats) return std::move(stats).error();
  stats->memory = "caller-provided";
  stats->tensors = tensors.size();
  stats->seconds = SecondsSince(start);
  return stats;
}

// --- Loader::Impl, tensor parallel (loader/tp_load.h) --------------------------

namespace {

std::vector<const TensorInfo*> Sources(std::span<const TpItem> items) {
  std::vector<const TensorInfo*> sources;
  sources.reserve(items.size());
  for (const TpItem& item : items) sources.push_back(item.source);
  return sources;
}

// One segment per tensor that reads anything: what OpenFiles needs to know.
std::vector<Segment> ShardUse(std::span<const TpItem> items) {
  std::vector<Segment> use;
  for (const TpItem& item : items) {
    use.push_back(Segment{item.source->shard, 0, item.slice.size, nullptr, 0});
  }
  return use;
}

// Lays ITEMS out from BASE; fills `segments` and `windows`, returns each
// local tensor's address.
std::vector<std::byte*> PlaceTp(std::span<const TpItem> items, const TpLayout& layout,
                                std::byte* base, std::vector<Segment>& segments,
                                std::vector<Window>& windows) {
  std::vector<std::byte*> data(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    data[i] = items[i].slice.size > 0 ? base + layout.position[i] : base;
    AppendTpSegments(items[i], data[i], static_cast<std::uint32_t>(i), segments);
  }
  for (const ArenaLayout::Region& r : layout.regions) {
    windows.push_back(Window{base + r.begin, base + r.end});
  }
  return data;
}

}  // namespace

Result<TpSlices> Loader::Impl::SliceTp(const Selection& selection,
                                       const TensorParallel& tp) const {
  auto context = ResolveTp(checkpoint, tp);
  if (!context) return std::move(context).error();
  auto selected = Select(checkpoint, selection);
  if (!selected) return std::move(selected).error();
  auto items = SliceSelected(*context, *selected);
  if (!items) return std::move(items).error();
  return TpSlices{std::make_shared<const TpContext>(std::move(*context)), std::move(*items)};
}

Result<Loader::Impl::TpPrepared> Loader::Impl::PrepareTp(const Selection& selection,
                                                         const TensorParallel& tp) const {
  auto slices = SliceTp(selection, tp);
  if (!slices) return std::move(slices).error();
  auto files = OpenFiles(ShardUse(slices->items));
  if (!files) return std::move(files).error();
  TpLayout layout =
      LayOutTp(slices->items, options.direct ? files->alignment() : kBufferedArenaAlignment);
  return TpPrepared{std::move(*slices), std::move(*files), std::move(layout)};
}

// The read plan of a load, made without memory (kPlanningBase) and without
// reading: the files are only opened, for their O_DIRECT alignment.
Result<RankPlan> Loader::Impl::PlanTp(const Selection& selection, const TensorParallel& tp) {
  auto prepared = PrepareTp(selection, tp);
  if (!prepared) return std::move(prepared).error();
  const std::vector<TpItem>& items = prepared->slices.items;
  const FileTable* files = &prepared->files;
  const TpLayout& layout = prepared->layout;
  std::vector<Segment> segments;
  std::vector<Window> windows;
  PlaceTp(items, layout, kPlanningBase, segments, windows);
  PlanOptions plan_options;
  plan_options.chunk_size = options.chunk_size;
  plan_options.workers = threads;
  plan_options.direct = options.direct;
  plan_options.alignment = files->alignment();
  plan_options.windows = windows;
  auto plan = PlanReads(segments, plan_options);
  if (!plan) return std::move(plan).error();
  RankPlan out{tp.rank, tp.world, {}, plan->bytes_delivered, 0, plan->bytes_requested,
               plan->ops.size()};
  for (const TpItem& item : items) {
    out.tensors.push_back(DescribeTp(item));
    out.local_bytes += item.slice.size;
  }
  return out;
}

Result<LoadedCheckpoint> Loader::Impl::LoadTp(const Selection& selection,
                                              const TensorParallel& tp) {
  auto start = std::chrono::steady_clock::now();
  if (options.dtype) {
    auto slices = SliceTp(selection, tp);
    if (!slices) return std::move(slices).error();
    auto [items, segments] = TpConvertItems(slices->items);
    return LoadConverted(items, segments, slices->context);
  }
  auto prepared = PrepareTp(selection, tp);
  if (!prepared) return std::move(prepared).error();
  const std::vector<TpItem>& items = prepared->slices.items;
  const FileTable* files = &prepared->files;
  const TpLayout& layout = prepared->layout;
  auto memory = MappedMemory::Map(layout.size, options.huge_pages);
  if (!memory) return std::move(memory).error();
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  impl->arena = std::move(*memory);
  impl->tp = prepared->slices.context;
  std::byte* base = impl->arena.data() != nullptr ? impl->arena.data() : kNoBytes;
  std::vector<Segment> segments;
  std::vector<std::byte*> data = PlaceTp(items, layout, base, segments, impl->windows);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const TensorInfo& t = *items[i].source;
    impl->tensors.push_back(LoadedTensor{t.name, t.dtype, items[i].slice.shape,
                                         {data[i], items[i].slice.size}});
  }
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  auto stats = Execute(*files, segments, impl->windows, Sources(items), &fault_in);
  if (!stats) return std::move(stats).error();
  for (std::size_t i = 0; i < items.size(); ++i) ZeroPadding(items[i].slice, data[i]);
  std::vector<const std::byte*> unchanged(items.size(), nullptr);  // slices: re-read
  if (Status s = VerifyIfAsked(Sources(items), unchanged, *stats); !s) return std::move(s).error();
  impl->stats = std::move(*stats);
  impl->stats.memory = fault_in.Describe();
  impl->stats.tensors = items.size();
  impl->stats.seconds = SecondsSince(start);
  return LoadedCheckpoint(std::move(impl));
}

// Rank RANK's slice of the tensor that DESTINATION (or a reloaded tensor)
// names, which must have SIZE bytes and, when SHAPE is given, that shape.
Result<TpItem> Loader::Impl::SliceOne(const TpContext& context, const std::string& name,
                                      std::uint64_t size,
                                      const std::vector<std::uint64_t>* shape) const {
  const TensorInfo* t = checkpoint.Find(name);
  if (t == nullptr) {
    return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), name,
                     "no tensor of this name in the checkpoint");
  }
  auto slice = tp::SliceFor(context.plan, *t, context.rank, context.world);
  if (!slice) return std::move(slice).error();
  std::string rank = "rank " + std::to_string(context.rank) + " of " +
                     std::to_string(context.world);
  if (!slice->load) return Invalid(name, rank + " does not load this tensor (" + slice->rule + ")");
  if (slice->size != size || (shape != nullptr && *shape != slice->shape)) {
    return Invalid(name, "destination holds " + std::to_string(size) + " bytes; " + rank +
                             " gets " + std::to_string(slice->size) + " (" + slice->rule + ")");
  }
  return TpItem{t, std::move(*slice)};
}

// Loads each item into its address, then zeroes the padding.
Result<LoadStats> Loader::Impl::ExecuteTp(std::span<const TpItem> items,
                                          std::span<std::byte* const> data,
                                          std::span<const Window> windows) {
  std::vector<Segment> segments;
  for (std::size_t i = 0; i < items.size(); ++i) {
    AppendTpSegments(items[i], data[i], static_cast<std::uint32_t>(i), segments);
  }
  auto files = OpenFiles(segments);
  if (!files) return std::move(files).error();
  auto stats = Execute(*files, segments, windows, Sources(items), nullptr);
  if (!stats) return std::move(stats).error();
  for (std::size_t i = 0; i < items.size(); ++i) ZeroPadding(items[i].slice, data[i]);
  stats->tensors = items.size();
  return stats;
}

Status Loader::Impl::ReloadTp(LoadedCheckpoint::Impl& target) {
  auto start = std::chrono::steady_clock::now();
  std::vector<TpItem> items;
  std::vector<std::byte*> data;
  for (const LoadedTensor& lt : target.tensors) {
    auto item = SliceOne(*target.tp, lt.name, lt.data.size(), &lt.shape);
    if (!item) return std::move(item).error();
    items.push_back(std::move(*item));
    data.push_back(lt.data.data());
  }
  auto stats = ExecuteTp(items, data, target.windows);
  if (!stats) return std::move(stats).error();
  std::vector<const std::byte*> unchanged(items.size(), nullptr);  // slices: re-read
  if (Status s = VerifyIfAsked(Sources(items), unchanged, *stats); !s) return std::move(s).error();
  target.stats = std::move(*stats);
  target.stats.memory = "reused (faulted in by the first load)";
  target.stats.seconds = SecondsSince(start);
  return {};
}

Result<LoadStats> Loader::Impl::LoadIntoTp(std::span<const Destination> destinations,
                                           const TensorParallel& tp) {
  auto start = std::chrono::steady_clock::now();
  auto context = ResolveTp(checkpoint, tp);
  if (!context) return std::move(context).error();
  std::vector<const TensorInfo*> sources;
  for (const Destination& d : destinations) {
    const TensorInfo* t = checkpoint.Find(d.name);
    if (t != nullptr) sources.push_back(t);
  }
  if (Status s = ValidateTp(*context, sources); !s) return std::move(s).error();
  std::vector<TpItem> items;
  std::vector<std::byte*> data;
  for (const Destination& d : destinations) {
    auto item = SliceOne(*context, d.name, d.size, nullptr);
    if (!item) return std::move(item).error();
    if (d.data == nullptr && d.size > 0) return Invalid(d.name, "null destination");
    items.push_back(std::move(*item));
    data.push_back(static_cast<std::byte*>(d.data));
  }
  auto stats = ExecuteTp(items, data, {});
  if (!stats) return std::move(stats).error();
  stats->memory = "caller-provided";
  stats->seconds = SecondsSince(start);
  return stats;
}

// --- Loader ------------------------------------------------------------------

Result<Loader> Loader::Open(const std::string& path, LoadOptions options) {
  try {
    auto checkpoint = Checkpoint::Open(path);
    if (!checkpoint) return std::move(checkpoint).error();
    return Open(std::move(*checkpoint), std::move(options));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<Loader> Loader::Open(Checkpoint checkpoint, LoadOptions options) {
  try {
    if (options.queue_depth == 0) return Invalid("", "queue_depth must be at least 1");
    if (options.chunk_size == 0) return Invalid("", "chunk_size must be at least 1");
    if (options.dtype && !IsConversionTarget(*options.dtype)) {
      return Invalid("", "dtype must be BF16, F16 or F32, not " +
                             std::string(DTypeName(*options.dtype)));
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
    auto impl = std::make_unique<Impl>(std::move(checkpoint), std::move(options), threads);
    impl->use_uring = use_uring;
    impl->backend_reason = std::move(reason);
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
  try {
    return impl_->Load(selection);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Status Loader::Reload(LoadedCheckpoint& loaded) {
  try {
    return impl_->Reload(loaded);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadStats> Loader::LoadInto(std::span<const Destination> destinations) {
  try {
    return impl_->LoadInto(destinations);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<RankPlan> Loader::Plan(const Selection& selection, const TensorParallel& tp) {
  try {
    return impl_->PlanTp(selection, tp);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadedCheckpoint> Loader::Load(const Selection& selection, const TensorParallel& tp) {
  try {
    if (tp.world == 1 && tp.rank == 0 && tp.plan.empty()) return impl_->Load(selection);
    return impl_->LoadTp(selection, tp);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

Result<LoadStats> Loader::LoadInto(std::span<const Destination> destinations,
                                   const TensorParallel& tp) {
  try {
    if (tp.world == 1 && tp.rank == 0 && tp.plan.empty()) return impl_->LoadInto(destinations);
    return impl_->LoadIntoTp(destinations, tp);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted();
  }
}

}  // namespace shardload
