// Loads tensors of a checkpoint into memory: the whole checkpoint or a
// selection, into memory the library owns or into the caller's buffers.
// Reads run in parallel (io_uring, one ring per worker; pread fallback),
// straight into the destination memory.
// Thread-compatible: one Load at a time per Loader; results are immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/cancel.h"
#include "shardload/checkpoint.h"
#include "shardload/cooperate.h"
#include "shardload/device.h"
#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/read_strategy.h"
#include "shardload/stats.h"

namespace shardload {

// The smallest LoadOptions::chunk_size: a read plan holds about 50 bytes per
// chunk, so 4 KiB chunks cost at most ~1.2% of the bytes loaded.
inline constexpr std::uint64_t kMinChunkSize = 4096;

struct LoadOptions {
  // Workers: the reads are split into this many shares of about equal bytes,
  // each read in file order through its own io_uring ring (or pread loop); a
  // worker whose share is done takes over the back half of the fullest other
  // share, so a worker slowed by page faults or a slow device does not hold
  // up the load.
  // They run as oneTBB tasks, at most oneTBB's thread limit (one per CPU
  // unless the application sets tbb::global_control) at a time.
  // Default: 0 = one per online CPU.
  unsigned threads = 0;
  // Reads in flight per worker (capped at 4096; with staged O_DIRECT reads,
  // at 16 MiB of staging). Default: 32.
  unsigned queue_depth = 32;
  // Largest single read; larger ranges are split (capped at 1 GiB). Ranges
  // adjacent both in the file and in destination memory are merged first.
  // At least kMinChunkSize (else kInvalidArgument). Default: 4 MiB.
  std::uint64_t chunk_size = 4ULL << 20;
  // How reads meet the page cache:
  //   kAuto      (default) what is resident in the page cache is read
  //              through it, the rest with O_DIRECT, decided per range from
  //              residency (cachestat(2), else mincore; a partly resident
  //              tensor is split at 2 MiB file offsets). A file system that
  //              refuses O_DIRECT is read buffered (LoadStats::mode_note).
  //   kBuffered  every read through the page cache (no residency probe).
  //   kDirect    every read with O_DIRECT; a file system that refuses it
  //              fails the load with kUnsupported.
  // O_DIRECT reads cover the aligned superset of each range (alignment from
  // statx STATX_DIOALIGN, else 4096). Unless kBuffered, library-owned memory
  // is laid out so that these reads land with every tensor byte in its final
  // place (no copy). Caller-provided destinations are read through a bounded
  // staging area (at most 16 MiB per worker) and copied, unless a range and
  // its destination are both aligned already.
  IoMode mode = IoMode::kAuto;
  // Default: kAuto = io_uring when it can be set up, else pread (reported).
  Backend backend = Backend::kAuto;
  // How a tensor-parallel slice's rows (strided runs) are read: exact runs,
  // the covering range staged and scattered, a mix, or the covering range
  // mapped and copied out (ReadStrategy in shardload/read_strategy.h). kAuto:
  // the cost model picks per tensor. Staging is bounded: each worker holds at
  // most 16 MiB of staging buffers (queue_depth staged reads of at most 1 MiB
  // each); mapped reads map the shards they read (address space only), a
  // worker populating one window of at most 32 MiB at a time (64 KiB of
  // page-table entries). Default: kAuto.
  ReadStrategy read_strategy = ReadStrategy::kAuto;
  // Per tensor, bytes read / bytes received at most this (>= 1): caps the
  // gaps staged, mixed and mapped reads read through (or map). 1 gives exact reads (O_DIRECT
  // still reads each run's aligned superset). Default: 8.
  double max_over_read = 8.0;
  // What the planner assumes an operation and a byte cost (buffered warm,
  // buffered cold, O_DIRECT, mapped, staging copy); defaults measured by
  // perf/read_cost, docs/performance.md "Read cost model".
  CostModel cost_model;
  // Put library-owned memory on transparent huge pages. Default: on.
  bool huge_pages = true;
  // Caller-provided destinations: fault their pages in (MADV_POPULATE_WRITE)
  // just before each read rather than inside the read's copy. Library-owned
  // memory does not use this: its huge pages are faulted in by the reads'
  // copies, with one timed sample per 64 MiB region (a region whose sample
  // and most recent ones were slow, as when memory went back to the host
  // after sitting idle, gets 4 KiB pages instead, populated before each
  // read); see LoadStats::memory.
  // Default: off.
  bool prefault = false;
  // Called from worker threads with (bytes done, bytes total): about once
  // per 64 MiB delivered and once when done == total. Calls from different
  // workers may overlap or arrive slightly out of order. Must be thread-safe
  // and cheap; if it throws, the exception is dropped and it is not called
  // again. Default: none.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
  // Cancellation (shardload/cancel.h): once token->Cancel() is called, from
  // any thread, every load of this Loader fails with kCancelled ("cancelled
  // by the caller"), a running one within one read completion per worker,
  // its memory freed. A Cancel() that comes after the reads have finished
  // may still fail the load. Default: none.
  std::shared_ptr<CancelToken> cancel;
  // Cooperation with the other processes of this node that load the same
  // checkpoint (shardload/cooperate.h, docs/cooperate.md): with a group, the
  // members agree on the union of what they need, read each byte of it once
  // for the node into shared staging and copy their own slices out. Every
  // member must load the same checkpoint, plan, world and selection with the
  // same read options, each its own rank (else kPeerMismatch); a member that
  // fails or dies fails the others with kPeerFailed. Default: none (alone).
  Cooperation cooperate;
  // Where the tensors land (docs/device.md). Default: host memory. With a
  // CUDA device, the CUDA runtime is loaded at Loader::Open (dlopen; no build
  // dependency): without it or the device, Open fails with kUnsupported
  // saying what is missing. Reads then land in a pinned host staging ring
  // and are copied to the device in waves, each read while the previous
  // one's copies run; library-owned device memory is one cudaMalloc per load,
  // freed with the LoadedCheckpoint, and LoadInto's destinations are device
  // pointers.
  Device device;
  // The pinned staging ring of a device load, both halves (at least 8 KiB,
  // else Open fails with kInvalidArgument; a load that fits one half
  // registers only what it uses). Default: 256 MiB.
  std::uint64_t staging_bytes = 256ULL << 20;
  // CUDA streams the copies are spread over. Default: 2.
  unsigned device_streams = 2;
  // GPUDirect Storage for a device load: what `mode` reads with O_DIRECT
  // (kDirect, or kAuto's cold ranges) is read by cuFileRead straight into
  // device memory where file offset and device address are 4 KiB aligned;
  // the rest is staged. libcufile is loaded at Open (dlopen;
  // $SHARDLOAD_CUFILE, else libcufile.so.0 / .so). Without it, its driver,
  // or GPUDirect proper (compatibility mode only), or with kBuffered, the
  // load is staged and LoadStats::transfer says why; a file cuFile cannot
  // register is staged. Never fails a load by itself; a failed cuFileRead is
  // kIoError. Ignored for CPU loads. docs/device.md. Default: off.
  bool gds = false;
  // Path of a manifest (`sha256sum` output or a JSON object name -> SHA-256
  // hex; docs/cli.md, `verify`). Load checks every shard it read: a shard
  // loaded whole, unchanged, is hashed from the loaded bytes (no second
  // read) while the load runs, in file order as its reads complete; a shard
  // read only in part (a selection, rank slices, a dtype conversion) or
  // loaded to a CUDA device is hashed by reading the file again, on the same
  // hashing threads, also while the load runs. A mismatch fails the
  // load with kChecksumMismatch naming the file, and no tensor is returned.
  // Shards the load did not read from are not checked. Reload checks the
  // same way (a mismatch fails it; the bytes are then unspecified); LoadInto
  // does not check. Default: empty = no check.
  std::string verify;
  // Load floating-point tensors as this dtype (BF16, F16 or F32): BF16, F16,
  // F32, F8_E4M3 and F8_E5M2 tensors are converted (round to nearest even;
  // NaN, infinities and subnormals kept) while copied out of a bounded
  // staging buffer per worker into memory of the converted size; other
  // tensors (integers, bool, F64, other F8/F6/F4 types) keep their bytes
  // and dtype. LoadedTensor::dtype and data are the converted ones. Load
  // only (whole or rank slices; host memory only, not with `mode` kDirect:
  // buffered preads, no io_uring; `progress` counts converted bytes written);
  // Reload of a converted load fails (dtype differs), LoadInto ignores it.
  // Default: nullopt.
  std::optional<DType> dtype;
};

// Which tensors to load. Both empty: all of them.
struct Selection {
  std::vector<std::string> names;  // exact names; an unknown name is an error
  // Globs over dot-separated names: `*` is one component, `**` any number
  // (zero included). A glob that matches nothing is an error.
  std::vector<std::string> globs;
};

// The tensors a selection picks, sorted by name.
Result<std::vector<const TensorInfo*>> Select(const Checkpoint& checkpoint,
                                              const Selection& selection);


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
// LoadOptions::device a CUDA device, `data` is a device pointer on it.
struct Destination {
  std::string name;
  void* data = nullptr;
  std::uint64_t size = 0;
};

// Where a tensor-parallel plan comes from; the kind says how to read it
// (nothing is guessed from a file name). Files are opened like an index file:
// non-blocking, regular files only, at most 64 MiB.
struct PlanSource {
  enum class Kind {
    kNone,          // no plan: with world 1, every tensor whole (a plain load)
    kFile,          // `path`: our plan JSON (docs/tp-plan.md)
    kHf,            // the base_model_tp_plan of the checkpoint's config.json
    kHfConfig,      // `path`: a Hugging Face config.json
    kJson,          // `text`: our plan JSON, in memory; errors name `path`
    kHfConfigJson,  // `text`: a Hugging Face config, in memory; errors name `path`
  };
  Kind kind = Kind::kNone;
  std::string path;
  std::string text;

  static PlanSource None() { return {}; }
  static PlanSource File(std::string path) { return {Kind::kFile, std::move(path), {}}; }
  static PlanSource Hf() { return {Kind::kHf, {}, {}}; }
  static PlanSource HfConfig(std::string path) { return {Kind::kHfConfig, std::move(path), {}}; }
  static PlanSource Json(std::string text, std::string name = "<plan JSON>") {
    return {Kind::kJson, std::move(name), std::move(text)};
  }
  static PlanSource HfConfigJson(std::string text, std::string name = "<config JSON>") {
    return {Kind::kHfConfigJson, std::move(name), std::move(text)};
  }
  // Reads the file at PATH (as above) and returns it as kJson when its
  // top-level object has "tp_plan_version" (our format), else as
  // kHfConfigJson; errors then name PATH. For a command line that takes
  // either kind of file. Errors: kIoError (errno attached) / kNotRegularFile /
  // kTpPlanJson (too large).
  static Result<PlanSource> FromFileContent(const std::string& path);

  // "hf", the path, or the name given to text: what reports show.
  std::string Describe() const;
  bool operator==(const PlanSource&) const = default;
};

// Tensor-parallel loading: rank `rank` of `world` receives only its slices of
// each tensor, as the plan says (docs/tp-plan.md), and reads from storage only
// the bytes it needs. world == 1 with no plan is a plain load.
struct TensorParallel {
  unsigned rank = 0;
  unsigned world = 1;
  PlanSource plan;
};

// What one rank gets of one tensor, computed without reading tensor data.
// One piece of a quantized tensor's split (docs/tp-plan.md, "Quantized
// checkpoints"): the weight's logical indices [weight_begin, weight_end) on
// its split dimension, and this tensor's indices [begin, end) on split_dim.
struct QuantRange {
  std::uint64_t weight_begin = 0;
  std::uint64_t weight_end = 0;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

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
  // Resolves the checkpoint (Checkpoint::Open) and decides the backend.
  static Result<Loader> Open(const std::string& path, LoadOptions options = {});
  // The same for a checkpoint description already built (e.g. by hand in
  // tests, or resolved once and loaded by several Loaders).
  static Result<Loader> Open(Checkpoint checkpoint, LoadOptions options = {});

  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  ~Loader();

  const Checkpoint& checkpoint() const;
  const LoadOptions& options() const;

  // Loads the selection into fresh library-owned memory: one anonymous
  // mapping (2 MiB aligned, MADV_HUGEPAGE with huge_pages) holding each
  // shard's tensors in file order, faulted in by the workers that read into
  // it. Errors: Select's, kIoError / kTruncated naming file, offset and
  // length (the first error; the count of others is appended),
  // kResourceExhausted when memory runs out.
  Result<LoadedCheckpoint> Load(const Selection& selection = {});
  // Loads the same tensors again into `loaded`'s memory (a reload of
  // updated weights), looked up by name in this Loader's checkpoint; each
  // must still have the same dtype and shape. Refreshes loaded.stats().
  // On error, the tensors' bytes are unspecified.
  Status Reload(LoadedCheckpoint& loaded);
  // Loads each named tensor into the caller's buffer (a name may repeat,
  // buffers must not overlap). The buffers are written only within
  // [data, data + size).
  Result<LoadStats> LoadInto(std::span<const Destination> destinations);

  // Tensor-parallel variants: the same, for rank tp.rank of tp.world (the
  // plain ones above are rank 0 of world 1 with no plan: one implementation
  // serves both). The plan is read and parsed once per Loader and
  // PlanSource, then reused by every later call; it is checked against every
  // selected tensor before any read; loaded tensors have their local shapes
  // (LoadedTensor::shape), padding rows of a vocab split are zero. Reload
  // keeps the rank's plan. LoadInto's buffers must have the local sizes.
  // Plan computes what Load would read, without memory and without reading.
  Result<RankPlan> Plan(const Selection& selection, const TensorParallel& tp);
  // Plan for every rank of WORLD from one resolution of the plan, one
  // selection, one validation and one opening of the shards.
  Result<std::vector<RankPlan>> PlanRanks(const Selection& selection, const PlanSource& plan,
                                          unsigned world);
  Result<LoadedCheckpoint> Load(const Selection& selection, const TensorParallel& tp);
  Result<LoadStats> LoadInto(std::span<const Destination> destinations,
                             const TensorParallel& tp);

 private:
  struct Impl;
  explicit Loader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardload
