// The read runtime of a Loader: its workers (a oneTBB task_arena), the I/O
// backend chosen when it opens (io_uring, else pread, after a probe), and the
// one entry point every load path reads through: Read marks residency, plans
// the reads (plan/read_planner.h) and runs them on the workers straight into
// the segments' destinations, then sums what the workers did. The host path
// calls it once per load, the device path once per wave (device_load.h), the
// cooperative path once per slot of the node's staging (coop_load.h).
// Thread-compatible: one Read at a time per runtime (the workers it runs are
// its own).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <tbb/task_arena.h>

#include "buffers/fault_in_policy.h"
#include "io/completion.h"
#include "io/file_table.h"
#include "io/io_backend.h"
#include "io/op_queue.h"
#include "io/pread_backend.h"
#include "io/residency.h"
#include "io/uring_backend.h"
#include "plan/read_op.h"
#include "plan/read_planner.h"
#include "shardload/checkpoint.h"
#include "shardload/options.h"
#include "shardload/stats.h"

namespace shardload {

using ProgressFn = std::function<void(std::uint64_t, std::uint64_t)>;

// Progress is reported about once per this many bytes delivered.
inline constexpr std::uint64_t kProgressStep = 64ULL << 20;

// How one call reads (its LoadRequest's read fields).
struct ReadSettings {
  IoMode mode = IoMode::kAuto;
  ReadStrategy strategy = ReadStrategy::kAuto;
  double max_over_read = 8.0;
  CancelToken* cancel = nullptr;  // may be null
};
ReadSettings SettingsOf(const LoadRequest& request);

// kCancelled ("cancelled by the caller") once CANCEL (may be null) is
// cancelled: checked between the phases of a load.
Status CheckCancel(const CancelToken* cancel);

// One Read: where the segments' bytes come from and what is told as they
// arrive.
struct ReadJob {
  FileTable* files = nullptr;                  // the segments' files (file = index)
  std::span<const Window> windows;             // memory the reads may overwrite
  std::span<const TensorInfo* const> tensors;  // names the tensor of a failed read
  FaultInPolicy* fault_in = nullptr;           // library-owned host memory, else null
  DeliveryObserver* observer = nullptr;        // told which bytes are in place; may be null
  ProgressFn progress;                         // (done, total); may be empty
  ReadSettings settings;
};

// The read plan of some segments once residency has marked each of them
// (which are read with O_DIRECT), and what the marking found.
struct MarkedPlan {
  ReadPlan plan;
  ModeReport mode;
};

class ReadRuntime {
 public:
  // Probes the backend OPTIONS.backend asks for: kUnsupported when io_uring
  // is forced but unusable. OPTIONS.threads 0: one worker per online CPU.
  static Result<std::unique_ptr<ReadRuntime>> Open(const LoaderOptions& options);

  unsigned threads() const { return threads_; }
  const LoaderOptions& options() const { return options_; }

  // The plan Read would run for SEGMENTS in FILES, without reading.
  Result<MarkedPlan> Plan(FileTable& files, std::span<const Segment> segments,
                          std::span<const Window> windows, const ReadSettings& settings) const;
  // Reads SEGMENTS into their destinations (host memory) on the workers.
  // Errors: the first worker's (kIoError / kTruncated naming file, tensor,
  // offset and length; the count of others appended), kCancelled,
  // kResourceExhausted.
  Result<LoadStats> Read(const ReadJob& job, std::span<const Segment> segments);

 private:
  ReadRuntime(const LoaderOptions& options, unsigned threads);
  void RunWorkers(const IoBackend& backend, const ReadPlan& plan, OpQueue& queue,
                  const ExecContext& ctx, std::vector<WorkerStats>& stats,
                  std::vector<Status>& status);
  std::optional<Error> FirstError(const ReadPlan& plan, const std::vector<WorkerStats>& stats,
                                  const std::vector<Status>& status,
                                  std::span<const TensorInfo* const> tensors) const;
  LoadStats SumStats(const IoBackend& backend, const MarkedPlan& marked, IoMode mode,
                     const std::vector<WorkerStats>& stats) const;

  LoaderOptions options_;
  unsigned threads_;
  bool use_uring_ = false;
  std::string backend_reason_;
  tbb::task_arena arena_;
  UringBackend uring_;
  PreadBackend pread_;
};

}  // namespace shardload
