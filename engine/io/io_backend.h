// The seam between the scheduler and the kernel: an IoBackend runs the
// ReadOps one worker takes from the load's OpQueue (op_queue.h), on the
// calling thread. Implementations: the io_uring scheduler (uring_backend.h)
// and the pread pool (pread_backend.h); tests wrap one to inject faults
// (ExecContext::filter, tests/io/faulty_backend.h).
// Thread-safe: Execute may run concurrently on many threads (one per worker);
// an IoBackend holds no per-load state.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "io/op_queue.h"
#include "plan/read_op.h"
#include "shardload/error.h"

namespace shardload {

class FileTable;
class FaultInPolicy;
class ShardMappings;
class CompletionFilter;

// Reports bytes delivered to a progress callback, at most about once per
// `step` bytes (plus once at the end). Thread-safe.
class ProgressMeter {
 public:
  // `callback` may be empty (then Add only counts).
  ProgressMeter(std::uint64_t total, std::uint64_t step,
                std::function<void(std::uint64_t, std::uint64_t)> callback)
      : total_(total), step_(step == 0 ? 1 : step), callback_(std::move(callback)) {}

  // An exception from the callback is swallowed and turns the callback off:
  // it must not unwind a worker with reads in flight.
  void Add(std::uint64_t bytes) noexcept {
    if (bytes == 0) return;
    std::uint64_t before = done_.fetch_add(bytes, std::memory_order_relaxed);
    std::uint64_t after = before + bytes;
    if (!callback_ || failed_.load(std::memory_order_relaxed)) return;
    if (before / step_ != after / step_ || after == total_) {
      try {
        callback_(after, total_);
      } catch (...) {
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }
  std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> done_{0};
  std::atomic<bool> failed_{false};
  const std::uint64_t total_;
  const std::uint64_t step_;
  const std::function<void(std::uint64_t, std::uint64_t)> callback_;
};

// Told which file bytes a load has put in place, as the reads finish
// (LoadOptions::verify hashes a shard while the load reads it).
class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  // Bytes [lo, hi) of shard `file` are in memory, byte x at at + (x - lo).
  // An O_DIRECT read's alignment slack is included: bytes that landed in a
  // window, not where a tensor wants them (the observer checks the
  // address). Called by the workers, concurrently; must not throw.
  virtual void Delivered(std::uint32_t file, std::uint64_t lo, std::uint64_t hi,
                         const std::byte* at) noexcept = 0;
};

// Shared, read-only inputs of one load, plus the two shared counters.
struct ExecContext {
  const FileTable* files = nullptr;   // must outlive Execute
  std::atomic<bool>* stop = nullptr;  // set by the first worker that fails
  ProgressMeter* progress = nullptr;  // may be null
  DeliveryObserver* observer = nullptr;  // may be null
  unsigned queue_depth = 32;          // reads in flight per worker (>= 1)
  std::uint64_t alignment = 1;        // O_DIRECT alignment of direct ops (ReadOp::direct)
  std::uint64_t staging_size = 0;     // bytes of one staging buffer; 0: none staged
  std::span<const Segment> scatter;   // the plan's scatter segments (ReadPlan::scatter)
  const ShardMappings* mappings = nullptr;  // the shards mapped ops read (mapped_read.h)
  std::uint64_t reads = 0;            // reads (pieces) in the plan; 0: one per op
  // Destination pages are faulted in by the workers, for the reads they
  // issue: in a library-owned arena as `arena_fault_in` decides
  // (buffers/fault_in_policy.h); elsewhere by the read's own copy, or with
  // `prefault` by MADV_POPULATE_WRITE just before each read.
  FaultInPolicy* arena_fault_in = nullptr;
  bool prefault = false;
  bool allow_fallback = true;         // io_uring: run pread if the ring fails
  // Test hook (completion.h): sees every read result first. Default: null.
  CompletionFilter* filter = nullptr;
};

// What one worker did. Owned by that worker; read after it finished.
struct WorkerStats {
  std::uint64_t bytes_read = 0;       // bytes the kernel returned
  std::uint64_t bytes_read_direct = 0;  // of those, by O_DIRECT reads
  std::uint64_t bytes_delivered = 0;  // destination bytes filled
  std::uint64_t read_ops = 0;         // reads (ReadOp pieces) started, resubmissions excluded
  std::uint64_t short_reads = 0;
  std::uint64_t retries = 0;
  std::size_t failed_op = OpQueue::kNone;  // plan index of the failing op
  std::uint64_t failed_offset = 0;    // file offset where that op failed
  bool first_error = false;           // this worker's error stopped the load
  bool fell_back = false;             // io_uring worker ran the pread loop
  std::string note;                   // why it fell back
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;
  // Runs the ops that `ops` hands out (each in the order taken, each fully:
  // every piece of it, PieceOf in read_op.h, is one read under the
  // completion policy in completion.h) on the calling thread,
  // until none is left. Returns the first error; after an error, or once
  // ctx.stop is set, takes nothing new, waits for reads in flight, and
  // returns (kCancelled when stopped by another worker). No read is in
  // flight when it returns.
  virtual Status Execute(WorkerOps& ops, const ExecContext& ctx,
                         WorkerStats& stats) const = 0;
  virtual const char* name() const = 0;
};

}  // namespace shardload
