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

#include "shardload/checkpoint.h"
#include "shardload/dtype.h"
#include "shardload/error.h"

namespace shardload {

enum class Backend { kAuto, kIoUring, kPread };

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
  // Default: 4 MiB.
  std::uint64_t chunk_size = 4ULL << 20;
  // O_DIRECT reads, bypassing the page cache. Reads cover the aligned
  // superset of each range (alignment from statx STATX_DIOALIGN, else 4096).
  // Library-owned memory is laid out so that these reads land with every
  // tensor byte in its final place (no copy). Caller-provided destinations
  // are read through a bounded staging area (at most 16 MiB per worker) and
  // copied, unless a range and its destination are both aligned already.
  // A file system that refuses O_DIRECT fails the load with kUnsupported.
  // Default: off.
  bool direct = false;
  // Default: kAuto = io_uring when it can be set up, else pread (reported).
  Backend backend = Backend::kAuto;
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
  // Path of a manifest (`sha256sum` output or a JSON object name -> SHA-256
  // hex; docs/cli.md, `verify`). Load checks every shard it read: a shard
  // loaded whole, unchanged, is hashed from the loaded bytes (no second
  // read); a shard read only in part (a selection, rank slices, a dtype
  // conversion) is hashed by reading the file again. A mismatch fails the
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
  // only (whole or rank slices; not with `direct`; `progress` is not
  // called); Reload of a converted load fails (dtype differs), LoadInto
  // ignores it. Reads use pread through the staging (the I/O engine's own
  // staging, issue 11, is meant to take this over). Default: nullopt.
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

struct LoadStats {
  std::uint64_t tensors = 0;
  std::uint64_t bytes = 0;        // bytes delivered into destinations
  std::uint64_t bytes_read = 0;   // bytes read from storage
  std::uint64_t read_ops = 0;     // reads submitted, resubmissions excluded
  std::uint64_t short_reads = 0;  // reads resumed after returning less
  std::uint64_t retries = 0;      // EAGAIN / EINTR resubmissions
  double seconds = 0;             // wall time of the load call
  std::string backend;            // "io_uring" or "pread"
  std::string backend_reason;     // why this backend, in words
  unsigned threads = 0;
  bool direct = false;
  std::string memory;             // how the destination memory was backed, and why
  std::string verified;           // LoadOptions::verify: what was checked, in words
};

// A loaded tensor: a view into memory owned by a LoadedCheckpoint.
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

  struct Impl;
  explicit LoadedCheckpoint(std::unique_ptr<Impl> impl);
  Impl* impl() const { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

// Where one tensor's bytes go: `size` must equal the tensor's size.
struct Destination {
  std::string name;
  void* data = nullptr;
  std::uint64_t size = 0;
};

// Tensor-parallel loading: rank `rank` of `world` receives only its slices of
// each tensor, as the plan says (docs/tp-plan.md), and reads from storage only
// the bytes it needs. world == 1 with an empty plan is a plain load.
struct TensorParallel {
  unsigned rank = 0;
  unsigned world = 1;
  // A plan JSON file (docs/tp-plan.md), "hf" for the base_model_tp_plan of
  // the checkpoint's config.json, or the path of a config.json.
  std::string plan;
};

// What one rank gets of one tensor, computed without reading tensor data.
struct PlannedTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;  // the local shape
  std::uint64_t bytes = 0;           // local bytes
  std::string rule;                  // the plan rule that decided it
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
  std::uint64_t bytes_read = 0;        // bytes read from storage (options.direct
                                       // alignment included)
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

  // Tensor-parallel variants: the same, for rank tp.rank of tp.world. The
  // plan is checked against every selected tensor before any read; loaded
  // tensors have their local shapes (LoadedTensor::shape), padding rows of a
  // vocab split are zero. Reload keeps the rank's plan. LoadInto's buffers
  // must have the local sizes.
  Result<RankPlan> Plan(const Selection& selection, const TensorParallel& tp);
  Result<LoadedCheckpoint> Load(const Selection& selection, const TensorParallel& tp);
  Result<LoadStats> LoadInto(std::span<const Destination> destinations,
                             const TensorParallel& tp);

  struct Impl;

 private:
  explicit Loader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardload
