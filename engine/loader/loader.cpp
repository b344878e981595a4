// Loader (loader_impl.h holds its insides): wires the rooms together, in one flow for
// plain and tensor-parallel loads (a plain load is rank 0 of world 1 under
// the identity plan). A call takes its LoadRequest through
//   plan (read once per source, cached) -> selection -> slices, layout and
//   segments (load_items.h) -> library-owned memory or caller destinations
//   -> the ending every call shares (Finish: verify alongside, read, check,
//   time), whose read goes to the read runtime (read_runtime.h) directly,
//   through a device's waves (device_load.h), the node's staging
//   (coop_load.h) or a conversion (convert_load.h).
// Allocation failure is turned into kResourceExhausted once, at the API
// boundary (guard.h).
// Thread-compatible: one Load/Reload/LoadInto/Plan at a time per Loader.
#include "shardload/loader.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "integrity/loaded_hash.h"
#include "loader/convert_load.h"
#include "loader/coop_load.h"
#include "loader/guard.h"
#include "loader/loader_impl.h"

namespace shardload {

namespace {

// Library-owned tensors keep their file alignment modulo this (buffered mode).
constexpr std::uint64_t kBufferedArenaAlignment = 64;

Error Invalid(std::string tensor, std::string detail) {
  return MakeError(ErrorCode::kInvalidArgument, "", std::move(tensor), std::move(detail));
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string RankText(const LoadContext& context) {
  return "rank " + std::to_string(context.rank) + " of " + std::to_string(context.world);
}

// "N tensors, names hash H": a cooperative job's selection of named tensors.
template <typename Named>
std::string NamesDigest(std::span<const Named> named) {
  std::string names;
  for (const Named& n : named) names += n.name + ",";
  return std::to_string(named.size()) + " tensors, " + SelectionDigest(names);
}

}  // namespace

// --- Loader::Impl: what a call is made of -----------------------------------

Result<LoadItem> Loader::Impl::SliceNamed(const LoadContext& context, const std::string& name,
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
  return LoadItem{t, std::move(*slice)};
}

Result<FileTable> Loader::Impl::OpenFiles(const Call& call, std::span<const LoadItem> items) const {
  return OpenShards(checkpoint, Sources(items), call.request.mode);
}

std::uint64_t Loader::Impl::ArenaAlignment(const FileTable& files, const LoadRequest& request) {
  // A cooperative load maps tensors every member needs from the node's one
  // copy, whole pages at a time: whole tensors keep their file's page offset.
  if (request.cooperate.group) return std::max<std::uint64_t>(files.alignment(), 4096);
  if (request.mode == IoMode::kBuffered) return kBufferedArenaAlignment;
  // cuFile reads land in place on 4 KiB boundaries of file and device.
  const GdsState* g = gds.For(request.mode);
  if (g != nullptr && g->session) return std::max(files.alignment(), kGdsAlignment);
  return files.alignment();
}

Result<LoadStats> Loader::Impl::Run(const Call& call, FileTable& files,
                                    std::span<const LoadItem> items,
                                    std::span<std::byte* const> data, const Memory& memory,
                                    DeliveryObserver* observer) {
  const LoadRequest& request = call.request;
  const std::vector<Segment> segments = MakeSegments(items, data);
  const std::vector<const TensorInfo*> tensors = Sources(items);
  const std::vector<DeviceTensor> local = LocalTensors(items, data);
  const ReadJob job{&files,   memory.windows,   tensors,          memory.fault_in,
                    observer, request.progress, SettingsOf(request)};
  const DeviceLoad device{cuda, gds.For(request.mode), memory.owned};
  auto stats =
      call.coop != nullptr
          ? ReadCooperative({call.coop, runtime.get(), &checkpoint, job.settings, request.progress},
                            job, device, local, segments)
          : ReadSegments(*runtime, job, device, local, segments);
  if (!stats) return std::move(stats).error();
  if (!cuda) {  // device loads zero the padding in staging
    for (std::size_t i = 0; i < items.size(); ++i) ZeroPadding(items[i].slice, data[i]);
  }
  stats->tensors = items.size();
  return stats;
}

Result<LoadStats> Loader::Impl::Finish(const Call& call, std::span<const LoadItem> items,
                                       bool verify, std::span<std::byte* const> hash_from,
                                       const Reader& read) const {
  std::unique_ptr<LoadVerifier> verifier;
  if (verify && !call.request.verify.empty()) {
    // A device or cooperative load's bytes arrive where the verifier does
    // not observe them: its shards are hashed from storage.
    const bool observed = !cuda && !call.request.cooperate.group;
    if (!observed) hash_from = {};
    auto started = LoadVerifier::Start(checkpoint, call.request.verify,
                                       HashSources(items, hash_from), runtime->threads());
    if (!started) return std::move(started).error();
    verifier = std::move(*started);
  }
  auto stats = read(verifier.get());
  if (!stats) return std::move(stats).error();
  if (verifier) {
    auto check = verifier->Finish();
    if (!check) return std::move(check).error();
    stats->verified = check->Describe();
  }
  stats->seconds = SecondsSince(call.start);
  return stats;
}

// --- Loader::Impl: the calls ---------------------------------------------------

Result<LoadedCheckpoint> Loader::Impl::Load(const Call& call) {
  const LoadRequest& request = call.request;
  auto context = plans.Context(checkpoint, request.tp);
  if (!context) return std::move(context).error();
  auto selected = Select(checkpoint, request.selection);
  if (!selected) return std::move(selected).error();
  auto items = SliceSelected(*context, checkpoint, *selected);
  if (!items) return std::move(items).error();
  if (Status s = CheckCancel(request.cancel.get()); !s) return std::move(s).error();
  if (request.dtype) return LoadConverted(call, *items, std::move(*context));
  auto files = OpenFiles(call, *items);
  if (!files) return std::move(files).error();
  LoadLayout layout = LayOut(*items, ArenaAlignment(*files, request));
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  auto base = impl->Allocate(cuda, options.device, layout.size, options.huge_pages);
  if (!base) return std::move(base).error();
  impl->context = std::move(*context);
  std::vector<std::byte*> data = Place(*items, layout, *base, impl->windows);
  impl->tensors.reserve(items->size());
  for (std::size_t i = 0; i < items->size(); ++i) {
    const LoadItem& item = (*items)[i];
    impl->tensors.push_back(LoadedTensor{item.source->name, item.source->dtype, item.slice.shape,
                                         {data[i], item.slice.size}});
  }
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  const Memory memory{impl->windows, &fault_in, impl->DeviceSpan()};
  auto stats = Finish(call, *items, /*verify=*/true, data, [&](DeliveryObserver* observer) {
    return Run(call, *files, *items, data, memory, observer);
  });
  if (!stats) return std::move(stats).error();
  impl->stats = std::move(*stats);
  impl->stats.memory = cuda ? DeviceMemory(options.device) : fault_in.Describe();
  return LoadedCheckpoint(std::move(impl));
}

Result<LoadedCheckpoint> Loader::Impl::LoadConverted(const Call& call,
                                                     std::span<const LoadItem> items,
                                                     LoadContext context) {
  const LoadRequest& request = call.request;
  if (cuda) return Invalid("", "dtype conversion loads to host memory only");
  if (request.mode == IoMode::kDirect) {
    return Invalid("", "dtype conversion does not support O_DIRECT reads");
  }
  ConvertedLayout layout = LayOutConverted(items, *request.dtype);
  auto impl = std::make_unique<LoadedCheckpoint::Impl>();
  auto base = impl->Allocate(cuda, options.device, layout.total, options.huge_pages);
  if (!base) return std::move(base).error();
  impl->context = std::move(context);
  auto files = OpenFiles(call, items);
  if (!files) return std::move(files).error();
  FaultInPolicy fault_in(impl->arena.data(), impl->arena.size(), options.huge_pages);
  const CoopContext coop{call.coop, runtime.get(), &checkpoint, SettingsOf(request),
                         request.progress};
  const ConvertJob job{items,         &layout,          *base,     &*files,
                       &checkpoint,   runtime->threads(), options.chunk_size, &fault_in,
                       request.progress, call.coop != nullptr ? &coop : nullptr};
  // Verified by reading again, alongside the conversion.
  auto stats = Finish(call, items, /*verify=*/true, {},
                      [&](DeliveryObserver*) { return ReadConvertedItems(job); });
  if (!stats) return std::move(stats).error();
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::byte* data = layout.size[i] > 0 ? *base + layout.position[i] : *base;
    impl->tensors.push_back(LoadedTensor{items[i].source->name, layout.dtype[i],
                                         items[i].slice.shape, {data, layout.size[i]}});
  }
  stats->tensors = items.size();
  stats->threads = runtime->threads();
  stats->mode = request.mode;
  if (call.coop == nullptr) stats->backend = Backend::kPread;
  stats->memory = "converted to " + std::string(DTypeName(*request.dtype)) + "; " +
                  fault_in.Describe();
  impl->stats = std::move(*stats);
  return LoadedCheckpoint(std::move(impl));
}

Status Loader::Impl::Reload(const Call& call, LoadedCheckpoint& loaded) {
  LoadedCheckpoint::Impl* target = loaded.impl_.get();
  if (target == nullptr) return Invalid("", "Reload: the LoadedCheckpoint holds nothing");
  if (target->device != options.device) {
    return Invalid("", "Reload: the tensors are on " + DeviceName(target->device) +
                           ", this Loader loads to " + DeviceName(options.device));
  }
  std::vector<LoadItem> items;
  std::vector<std::byte*> data;
  items.reserve(target->tensors.size());
  data.reserve(target->tensors.size());
  for (const LoadedTensor& lt : target->tensors) {
    auto item = SliceNamed(target->context, lt.name, lt.data.size(), &lt);
    if (!item) return std::move(item).error();
    items.push_back(std::move(*item));
    data.push_back(lt.data.data());
  }
  auto files = OpenFiles(call, items);
  if (!files) return std::move(files).error();
  const Memory memory{target->windows, nullptr, target->DeviceSpan()};
  auto stats = Finish(call, items, /*verify=*/true, data, [&](DeliveryObserver* observer) {
    return Run(call, *files, items, data, memory, observer);
  });
  if (!stats) return std::move(stats).error();
  target->stats = std::move(*stats);
  target->stats.memory = cuda ? DeviceMemory(options.device) + ", reused"
                              : "reused (faulted in by the first load)";
  return {};
}

Result<LoadStats> Loader::Impl::LoadInto(const Call& call,
                                         std::span<const Destination> destinations) {
  auto context = plans.Context(checkpoint, call.request.tp);
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
  std::vector<LoadItem> items;
  std::vector<std::byte*> data;
  for (const Destination& d : destinations) {
    auto item = SliceNamed(*context, d.name, d.size, nullptr);
    if (!item) return std::move(item).error();
    if (d.data == nullptr && d.size > 0) return Invalid(d.name, "null destination");
    items.push_back(std::move(*item));
    data.push_back(static_cast<std::byte*>(d.data));
  }
  auto files = OpenFiles(call, items);
  if (!files) return std::move(files).error();
  // LoadInto does not verify (the caller's buffers are the caller's).
  auto stats = Finish(call, items, /*verify=*/false, {}, [&](DeliveryObserver*) {
    return Run(call, *files, items, data, Memory{}, nullptr);
  });
  if (!stats) return std::move(stats).error();
  stats->memory = "caller-provided";
  return stats;
}

Result<RankPlan> Loader::Impl::PlanItems(const LoadRequest& request, const LoadContext& context,
                                         std::span<const LoadItem> items, FileTable& files) {
  LoadLayout layout = LayOut(items, ArenaAlignment(files, request));
  std::vector<Window> windows;
  std::vector<std::byte*> data = Place(items, layout, kPlanningBase, windows);
  auto marked = runtime->Plan(files, MakeSegments(items, data), windows, SettingsOf(request));
  if (!marked) return std::move(marked).error();
  return DescribePlan(context, items, marked->plan);
}

Result<std::vector<RankPlan>> Loader::Impl::PlanRanks(const LoadRequest& request, unsigned first,
                                                      unsigned last) {
  const unsigned world = request.tp.world;
  auto context = plans.Context(checkpoint, TensorParallel{first, world, request.tp.plan});
  if (!context) return std::move(context).error();
  if (first >= last) return Invalid("", "PlanRanks: no rank to plan");
  auto selected = Select(checkpoint, request.selection);
  if (!selected) return std::move(selected).error();
  auto files = OpenShards(checkpoint, *selected, request.mode);
  if (!files) return std::move(files).error();
  auto matches = MatchSelected(*context, *selected);  // once for every rank
  if (!matches) return std::move(matches).error();
  std::vector<RankPlan> out;
  out.reserve(last - first);
  for (unsigned r = first; r < last; ++r) {
    context->rank = r;
    auto items = SliceSelected(*context, checkpoint, *selected, *matches);
    if (!items) return std::move(items).error();
    auto plan = PlanItems(request, *context, *items, *files);
    if (!plan) return std::move(plan).error();
    out.push_back(std::move(*plan));
  }
  return out;
}

// --- Loader ------------------------------------------------------------------

Result<Loader> Loader::OpenWithDefaults(Checkpoint checkpoint, const LoaderOptions& options,
                                        LoadRequest defaults) {
  return GuardMemory([&]() -> Result<Loader> {
    if (Status s = CheckLoaderOptions(options); !s) return std::move(s).error();
    if (Status s = CheckRequest(defaults); !s) return std::move(s).error();
    auto runtime = ReadRuntime::Open(options);
    if (!runtime) return std::move(runtime).error();
    std::shared_ptr<const CudaRuntime> cuda;
    if (options.device.is_cuda()) {
      auto opened = CudaRuntime::Open(options.device.index);
      if (!opened) return std::move(opened).error();
      cuda = std::move(*opened);
    }
    auto impl = std::make_unique<Impl>(std::move(checkpoint), std::move(*runtime),
                                       std::move(defaults));
    impl->cuda = std::move(cuda);
    // cuFile's driver opens with the Loader (as before the options split),
    // unless the default request reads everything buffered.
    (void)impl->gds.For(impl->defaults.mode);
    return Loader(std::move(impl));
  });
}

Result<Loader> Loader::Open(const std::string& path, const LoaderOptions& options) {
  return GuardMemory([&]() -> Result<Loader> {
    auto checkpoint = Checkpoint::Open(path);
    if (!checkpoint) return std::move(checkpoint).error();
    return OpenWithDefaults(std::move(*checkpoint), options, LoadRequest{});
  });
}

Result<Loader> Loader::Open(Checkpoint checkpoint, const LoaderOptions& options) {
  return OpenWithDefaults(std::move(checkpoint), options, LoadRequest{});
}

Result<Loader> Loader::OpenLegacy(const std::string& path, const LoadOptions& options) {
  return GuardMemory([&]() -> Result<Loader> {
    auto checkpoint = Checkpoint::Open(path);
    if (!checkpoint) return std::move(checkpoint).error();
    if (Status s = CheckCancel(options.cancel.get()); !s) return std::move(s).error();
    return OpenLegacy(std::move(*checkpoint), options);
  });
}

Result<Loader> Loader::OpenLegacy(Checkpoint checkpoint, const LoadOptions& options) {
  return OpenWithDefaults(std::move(checkpoint), static_cast<const LoaderOptions&>(options),
                          static_cast<const LoadRequest&>(options));
}

Loader::Loader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

const Checkpoint& Loader::checkpoint() const { return impl_->checkpoint; }
const LoaderOptions& Loader::options() const { return impl_->options; }

Result<LoadedCheckpoint> Loader::Load(const LoadRequest& request) {
  return GuardMemory([&]() -> Result<LoadedCheckpoint> {
    if (Status s = CheckRequest(request); !s) return std::move(s).error();
    const TensorParallel& tp = request.tp;
    auto identity = [&] {
      return JobIdentity(impl_->checkpoint, request, tp.rank, tp.world, &tp.plan, "load",
                         SelectionText(request.selection));
    };
    return Cooperating(request, impl_->checkpoint, identity, [&](coop::Session* session) {
      return impl_->Load(Impl::Call{request, session});
    });
  });
}

Status Loader::Reload(LoadedCheckpoint& loaded, const LoadRequest& request) {
  return GuardMemory([&]() -> Status {
    if (Status s = CheckRequest(request); !s) return s;
    auto identity = [&] {
      const LoadContext none;
      const LoadContext& context = loaded.impl_ ? loaded.impl_->context : none;
      return JobIdentity(impl_->checkpoint, request, context.rank, context.world, nullptr,
                         "reload", NamesDigest(std::span(loaded.tensors())));
    };
    return Cooperating(request, impl_->checkpoint, identity, [&](coop::Session* session) {
      return impl_->Reload(Impl::Call{request, session}, loaded);
    });
  });
}

Result<LoadStats> Loader::LoadInto(std::span<const Destination> destinations,
                                   const LoadRequest& request) {
  return GuardMemory([&]() -> Result<LoadStats> {
    if (Status s = CheckRequest(request); !s) return std::move(s).error();
    const TensorParallel& tp = request.tp;
    auto identity = [&] {
      return JobIdentity(impl_->checkpoint, request, tp.rank, tp.world, &tp.plan, "load_into",
                         NamesDigest(destinations));
    };
    return Cooperating(request, impl_->checkpoint, identity, [&](coop::Session* session) {
      return impl_->LoadInto(Impl::Call{request, session}, destinations);
    });
  });
}

Result<RankPlan> Loader::Plan(const LoadRequest& request) {
  return GuardMemory([&]() -> Result<RankPlan> {
    const TensorParallel& tp = request.tp;
    if (Status s = CheckRank(tp.plan, tp.rank, tp.world); !s) return std::move(s).error();
    auto plans = impl_->PlanRanks(request, tp.rank, tp.rank + 1);
    if (!plans) return std::move(plans).error();
    return std::move(plans->front());
  });
}

Result<std::vector<RankPlan>> Loader::PlanRanks(const LoadRequest& request) {
  return GuardMemory([&] { return impl_->PlanRanks(request, 0, request.tp.world); });
}

LoadRequest Loader::WithDefaults(const Selection& selection, const TensorParallel& tp) const {
  LoadRequest request = impl_->defaults;
  request.selection = selection;
  request.tp = tp;
  return request;
}

}  // namespace shardload
