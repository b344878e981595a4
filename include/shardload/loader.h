// Loads tensors of a checkpoint into memory: the whole checkpoint or a
// selection, into memory the library owns or into the caller's buffers.
// Reads run in parallel (io_uring, one ring per worker; pread fallback),
// straight into the destination memory.
// What a Loader is opened with and what each call asks for: options.h.
// Thread-compatible: one call at a time per Loader; results are immutable.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/options.h"
#include "shardload/stats.h"

namespace shardload {

// Deprecated, for code written before LoaderOptions and LoadRequest: both
// in one, given to Loader::Open. Its request part (all but `selection` and
// `tp`, which the calls take) is then used by every call without a
// LoadRequest of its own.
struct LoadOptions : LoaderOptions, LoadRequest {};

// A loaded tensor: a view into memory owned by a LoadedCheckpoint. After a
// load to a CUDA device, `data` holds device addresses: never dereference
// them on the host.
struct LoadedTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
  std::span<std::byte> data;
};

// Tensors loaded into library-owned memory; the views stay valid as long as
// this object lives. Move-only.
class LoadedCheckpoint {
 public:
  LoadedCheckpoint();
  LoadedCheckpoint(LoadedCheckpoint&&) noexcept;
  LoadedCheckpoint& operator=(LoadedCheckpoint&&) noexcept;
  ~LoadedCheckpoint();

  const std::vector<LoadedTensor>& tensors() const;  // sorted by name
  const LoadedTensor* Find(std::string_view name) const;
  const LoadStats& stats() const;  // of the latest load into this memory
  Device device() const;           // where the tensors are

 private:
  friend class Loader;  // the only way to fill one: Loader::Load
  struct Impl;
  explicit LoadedCheckpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where one tensor's bytes go: `size` must equal the tensor's size. With
// LoaderOptions::device a CUDA device, `data` is a device pointer on it.
struct Destination {
  std::string name;
  void* data = nullptr;
  std::uint64_t size = 0;
};

// One piece of a quantized tensor's split (docs/tp-plan.md, "Quantized
// checkpoints"): the weight's logical indices [weight_begin, weight_end) on
// its split dimension, and this tensor's indices [begin, end) on split_dim.
struct QuantRange {
  std::uint64_t weight_begin = 0;
  std::uint64_t weight_end = 0;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// What one rank gets of one tensor, computed without reading tensor data.
struct PlannedTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;  // the local shape
  std::uint64_t bytes = 0;           // local bytes
  std::string rule;                  // the plan rule that decided it
  // How its reads were planned (ReadPlan's per-tensor strategy): "exact",
  // "staged", "mixed" or "mapped"; and what they read. A read that covers several
  // tensors (coalesced neighbours) counts for the first one only, so these
  // add up to RankPlan::bytes_read and read_ops.
  std::string strategy;
  std::uint64_t bytes_read = 0;
  std::uint64_t read_ops = 0;
  // Quantized tensors under a plan's quantization_config:
  std::string follows;               // a companion's weight; empty otherwise
  int split_dim = -1;                // the dimension split; -1: whole
  std::uint64_t per = 0;             // weight indices per index of split_dim
                                     // (block, group or packing); 0: not split
  std::vector<QuantRange> ranges;    // per piece, in local order
  bool straddles = false;            // a block also goes to another rank
};

// One rank's share of a load: tensors, bytes received and bytes read.
struct RankPlan {
  unsigned rank = 0;
  unsigned world = 1;
  std::vector<PlannedTensor> tensors;  // the tensors this rank loads, by name
  std::uint64_t bytes = 0;             // bytes received from storage (as
                                       // LoadStats::bytes; vocab padding excluded)
  std::uint64_t local_bytes = 0;       // memory the local tensors take (sum of
                                       // PlannedTensor::bytes, padding included)
  std::uint64_t bytes_read = 0;        // bytes read from storage (O_DIRECT
                                       // alignment included; in auto mode as
                                       // the page cache is now)
  std::uint64_t read_ops = 0;
};

class Loader {
 public:
  // Resolves the checkpoint (Checkpoint::Open), decides the backend (a probe
  // of io_uring) and, for a CUDA device, loads its runtime. Errors:
  // Checkpoint::Open's, kInvalidArgument for options out of range,
  // kUnsupported for a forced io_uring or a device that cannot be used.
  static Result<Loader> Open(const std::string& path, const LoaderOptions& options = {});
  // The same for a checkpoint description already built (e.g. by hand in
  // tests, or resolved once and loaded by several Loaders).
  static Result<Loader> Open(Checkpoint checkpoint, const LoaderOptions& options = {});
  // Deprecated (LoadOptions): its request part, checked here, is the
  // request of every call below that takes none. (Templates only so that
  // Open(path, {}) stays the LoaderOptions overload.)
  template <typename Options>
    requires std::same_as<Options, LoadOptions>
  static Result<Loader> Open(const std::string& path, const Options& options) {
    return OpenLegacy(path, options);
  }
  template <typename Options>
    requires std::same_as<Options, LoadOptions>
  static Result<Loader> Open(Checkpoint checkpoint, const Options& options) {
    return OpenLegacy(std::move(checkpoint), options);
  }

  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  ~Loader();

  const Checkpoint& checkpoint() const;
  const LoaderOptions& options() const;

  // Loads request.selection, for rank request.tp.rank of request.tp.world,
  // into fresh library-owned memory: one anonymous mapping (2 MiB aligned,
  // MADV_HUGEPAGE with huge_pages) holding each shard's tensors in file
  // order, faulted in by the workers that read into it. Under a plan
  // (docs/tp-plan.md) the rank receives only its slices and reads only the
  // bytes it needs; the plan is read and parsed once per Loader and
  // PlanSource, then reused by every later call, and checked against every
  // selected tensor before any read; loaded tensors have their local shapes
  // (LoadedTensor::shape), padding rows of a vocab split are zero. Errors:
  // Select's, the plan's, kIoError / kTruncated naming file, offset and
  // length (the first error; the count of others is appended),
  // kResourceExhausted when memory runs out.
  Result<LoadedCheckpoint> Load(const LoadRequest& request);
  // Loads the same tensors again into `loaded`'s memory (a reload of
  // updated weights), looked up by name in this Loader's checkpoint, for
  // the rank and plan they were loaded for (request.selection and tp are
  // not used); each must still have the same dtype and shape. Refreshes
  // loaded.stats(). On error, the tensors' bytes are unspecified.
  Status Reload(LoadedCheckpoint& loaded, const LoadRequest& request);
  // Loads each named tensor into the caller's buffer (a name may repeat,
  // buffers must not overlap; request.selection is not used, nor
  // request.verify or dtype). The buffers are written only within
  // [data, data + size) and must have the rank's local sizes.
  Result<LoadStats> LoadInto(std::span<const Destination> destinations,
                             const LoadRequest& request);
  // What Load(request) would read, without memory and without reading.
  Result<RankPlan> Plan(const LoadRequest& request);
  // Plan for every rank of request.tp.world from one resolution of the
  // plan, one selection, one validation and one opening of the shards.
  Result<std::vector<RankPlan>> PlanRanks(const LoadRequest& request);

  // Shorthands: the calls above with this Loader's default request (a
  // default LoadRequest, or the request part of the LoadOptions it was
  // opened with) for the selection and rank given (none: every tensor,
  // rank 0 of 1 with no plan).
  Result<LoadedCheckpoint> Load(const Selection& selection = {}) {
    return Load(WithDefaults(selection, {}));
  }
  Result<LoadedCheckpoint> Load(const Selection& selection, const TensorParallel& tp) {
    return Load(WithDefaults(selection, tp));
  }
  Status Reload(LoadedCheckpoint& loaded) { return Reload(loaded, WithDefaults({}, {})); }
  Result<LoadStats> LoadInto(std::span<const Destination> destinations) {
    return LoadInto(destinations, WithDefaults({}, {}));
  }
  Result<LoadStats> LoadInto(std::span<const Destination> destinations,
                             const TensorParallel& tp) {
    return LoadInto(destinations, WithDefaults({}, tp));
  }
  Result<RankPlan> Plan(const Selection& selection, const TensorParallel& tp) {
    return Plan(WithDefaults(selection, tp));
  }
  Result<std::vector<RankPlan>> PlanRanks(const Selection& selection, const PlanSource& plan,
                                          unsigned world) {
    return PlanRanks(WithDefaults(selection, TensorParallel{0, world, plan}));
  }

 private:
  struct Impl;
  explicit Loader(std::unique_ptr<Impl> impl);
  // The default request with SELECTION and TP.
  LoadRequest WithDefaults(const Selection& selection, const TensorParallel& tp) const;
  static Result<Loader> OpenLegacy(const std::string& path, const LoadOptions& options);
  static Result<Loader> OpenLegacy(Checkpoint checkpoint, const LoadOptions& options);
  static Result<Loader> OpenWithDefaults(Checkpoint checkpoint, const LoaderOptions& options,
                                         LoadRequest defaults);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardload
