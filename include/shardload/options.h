// The options of a load, by lifetime (the leveldb way): LoaderOptions are
// fixed when a Loader opens (its workers, backend, memory and device), a
// LoadRequest is given to each call (what to load, for which rank, how to
// read and check it). Plain data; shardload/loader.h takes them.
// Thread-compatible: plain structs (progress and cancel are shared with the
// load that runs with them).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
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

// The smallest LoaderOptions::chunk_size: a read plan holds about 50 bytes per
// chunk, so 4 KiB chunks cost at most ~1.2% of the bytes loaded.
inline constexpr std::uint64_t kMinChunkSize = 4096;

// What a Loader is opened with and keeps for every call.
struct LoaderOptions {
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
  // Default: kAuto = io_uring when it can be set up, else pread (reported).
  Backend backend = Backend::kAuto;
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
  // GPUDirect Storage for a device load: what LoadRequest::mode reads with O_DIRECT
  // (kDirect, or kAuto's cold ranges) is read by cuFileRead straight into
  // device memory where file offset and device address are 4 KiB aligned;
  // the rest is staged. libcufile is loaded at Open (dlopen;
  // $SHARDLOAD_CUFILE, else libcufile.so.0 / .so). Without it, its driver,
  // or GPUDirect proper (compatibility mode only), or with kBuffered, the
  // load is staged and LoadStats::transfer says why; a file cuFile cannot
  // register is staged. Never fails a load by itself; a failed cuFileRead is
  // kIoError. Ignored for CPU loads. docs/device.md. Default: off.
  bool gds = false;
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

// What one call of a Loader loads and how (Load, Reload, LoadInto, Plan).
struct LoadRequest {
  // Which tensors (Load and Plan; LoadInto takes the destinations' names,
  // Reload the loaded tensors'). Default: all.
  Selection selection;
  // Which rank of which world, under which plan (Reload keeps the rank and
  // plan it was loaded for). Default: rank 0 of 1, no plan (a plain load).
  TensorParallel tp;
  // (A job's layout over its other parallel dimensions, pipeline and
  // expert, will sit here beside `tp`.)
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
  // Called from worker threads with (bytes done, bytes total): about once
  // per 64 MiB delivered and once when done == total. Calls from different
  // workers may overlap or arrive slightly out of order. Must be thread-safe
  // and cheap; if it throws, the exception is dropped and it is not called
  // again. Default: none.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
  // Cancellation (shardload/cancel.h): once token->Cancel() is called, from
  // any thread, every call made with it fails with kCancelled ("cancelled
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
};

}  // namespace shardload
