// The insides of Loader and LoadedCheckpoint (loader.cpp, the calls;
// loaded_checkpoint.cpp, the memory): what a Loader holds for its calls
// (checkpoint, read runtime, device, plan cache, default request) and what a
// call is (its request, its cooperative session, when it began).
// Thread-compatible: one call at a time per Loader.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "buffers/fault_in_policy.h"
#include "buffers/mapped_memory.h"
#include "coop/session.h"
#include "device/cuda_runtime.h"
#include "device/device_memory.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "loader/device_load.h"
#include "loader/load_items.h"
#include "loader/read_runtime.h"
#include "shardload/loader.h"

namespace shardload {

using Clock = std::chrono::steady_clock;

// kInvalidArgument for loader options out of range (options.cpp).
Status CheckLoaderOptions(const LoaderOptions& options);
// kInvalidArgument for a request out of range (options.cpp).
Status CheckRequest(const LoadRequest& request);

struct LoadedCheckpoint::Impl {
  MappedMemory arena;
  DeviceBuffer device_memory;  // instead of the arena when device is CUDA
  Device device;
  std::vector<LoadedTensor> tensors;  // sorted by name
  std::vector<Window> windows;        // regions of the arena (see load_items.h)
  LoadStats stats;
  LoadContext context;                  // the rank and plan it was loaded for (Reload keeps it)

  std::span<std::byte> DeviceSpan() const { return {device_memory.data(), device_memory.size()}; }
  // SIZE bytes of memory on DEVICE (a huge-page arena, or with CUDA one
  // device allocation) for the tensors; returns the base (a static
  // placeholder when SIZE is 0).
  Result<std::byte*> Allocate(const std::shared_ptr<const CudaRuntime>& cuda, Device where,
                              std::uint64_t size, bool huge_pages);
};

struct Loader::Impl {
  Impl(Checkpoint c, std::unique_ptr<ReadRuntime> r, LoadRequest d)
      : checkpoint(std::move(c)),
        defaults(std::move(d)),
        runtime(std::move(r)),
        options(runtime->options()),
        gds(options.gds && options.device.is_cuda()) {}

  // One call: its request, its cooperative session (null: alone) and when
  // it began.
  struct Call {
    const LoadRequest& request;
    coop::Session* coop = nullptr;
    Clock::time_point start = Clock::now();
  };
  // Where a call's items land: library-owned memory (WINDOWS: its regions
  // reads may overwrite; FAULT_IN: its host pages' policy; OWNED: its device
  // memory) or, all empty, the caller's.
  struct Memory {
    std::span<const Window> windows;
    FaultInPolicy* fault_in = nullptr;
    std::span<std::byte> owned;
  };
  // A call's read, told the verifier (null when none) to observe it.
  using Reader = std::function<Result<LoadStats>(DeliveryObserver*)>;

  // The slice of the tensor NAME, which must be loaded by CONTEXT's rank and
  // have SIZE bytes (and, when given, LIKE's dtype and shape).
  Result<LoadItem> SliceNamed(const LoadContext& context, const std::string& name,
                            std::uint64_t size, const LoadedTensor* like) const;
  Result<FileTable> OpenFiles(const Call& call, std::span<const LoadItem> items) const;
  // Library-owned memory is laid out for O_DIRECT unless every read is
  // buffered (for cuFile's 4 KiB grid with a GDS session).
  std::uint64_t ArenaAlignment(const FileTable& files, const LoadRequest& request);
  // Reads ITEMS into DATA (one address per item) in MEMORY, then zeroes
  // their padding; tells OBSERVER (may be null) which bytes are in place.
  Result<LoadStats> Run(const Call& call, FileTable& files, std::span<const LoadItem> items,
                        std::span<std::byte* const> data, const Memory& memory,
                        DeliveryObserver* observer);
  // The ending every call shares: with VERIFY (LoadRequest::verify set),
  // starts checking ITEMS' shards against the manifest, from HASH_FROM where
  // an item is its whole tensor in host memory, else by reading again;
  // READs; takes the check's verdict (LoadStats::verified); times the call.
  Result<LoadStats> Finish(const Call& call, std::span<const LoadItem> items, bool verify,
                           std::span<std::byte* const> hash_from, const Reader& read) const;
  Result<LoadedCheckpoint> Load(const Call& call);
  // LoadRequest::dtype: ITEMS in fresh memory of the converted sizes
  // (convert_load.h).
  Result<LoadedCheckpoint> LoadConverted(const Call& call, std::span<const LoadItem> items,
                                         LoadContext context);
  Status Reload(const Call& call, LoadedCheckpoint& loaded);
  Result<LoadStats> LoadInto(const Call& call, std::span<const Destination> destinations);
  // What Load would read of ITEMS, without memory and without reading:
  // FILES are only open, for their O_DIRECT alignment.
  Result<RankPlan> PlanItems(const LoadRequest& request, const LoadContext& context,
                             std::span<const LoadItem> items, FileTable& files);
  // Ranks [FIRST, LAST) of request.tp.world from one plan, one selection
  // and one opening of the shards (every shard any rank reads).
  Result<std::vector<RankPlan>> PlanRanks(const LoadRequest& request, unsigned first,
                                          unsigned last);

  Checkpoint checkpoint;
  LoadRequest defaults;  // for the calls without a LoadRequest
  std::unique_ptr<ReadRuntime> runtime;
  const LoaderOptions& options;             // the runtime's
  std::shared_ptr<const CudaRuntime> cuda;  // set when options.device is CUDA
  GdsAccess gds;                            // cuFile, or why a --gds load is staged
  PlanCache plans;
};

}  // namespace shardload
