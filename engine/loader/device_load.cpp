// The loader's side of device loads (device_load.h).
// Thread-safe: DeviceProgress is called from the readers' workers and the
// cuFile threads (atomics); the cuFile reads run on a thread of their own,
// joined (and stopped first on any error) before LoadThroughDevice returns.
#include "loader/device_load.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "device/gds.h"
#include "loader/cancel_watch.h"
#include "loader/guard.h"
#include "io/residency.h"

namespace shardload {
namespace {

constexpr std::uint64_t kProgressStep = 64ULL << 20;

std::string NotUsed(const std::string& why) {
  return "GDS not used (" + why + "): staged through pinned host memory";
}

// LoadRequest::progress over a whole device load: the waves' bytes (each
// wave's meter counts from the waves before it) plus cuFile's.
class DeviceProgress {
 public:
  DeviceProgress(ProgressFn callback, std::uint64_t total)
      : callback_(std::move(callback)), total_(total) {}

  // The meter of the next wave's reader (its exceptions unwind into the
  // wave's ProgressMeter, which swallows them).
  ProgressFn ForWave() {
    if (!callback_) return {};
    return [this](std::uint64_t done, std::uint64_t) {
      if (failed_.load(std::memory_order_relaxed)) return;
      try {
        callback_(std::min(staged_.load() + done + gds_.load(), total_), total_);
      } catch (...) {
        failed_.store(true, std::memory_order_relaxed);
        throw;
      }
    };
  }
  void WaveRead(std::uint64_t bytes) { staged_.fetch_add(bytes); }
  void GdsRead(std::uint64_t bytes) noexcept {
    const std::uint64_t before = gds_.fetch_add(bytes);
    if (before / kProgressStep != (before + bytes) / kProgressStep) {
      Call(staged_.load() + before + bytes);
    }
  }
  // The last call, done == total, once cuFile took part.
  void Finish() noexcept {
    if (gds_.load() > 0) Call(total_);
  }

 private:
  void Call(std::uint64_t done) noexcept {
    if (!callback_ || failed_.load(std::memory_order_relaxed)) return;
    try {
      callback_(std::min(done, total_), total_);
    } catch (...) {
      failed_.store(true, std::memory_order_relaxed);
    }
  }

  ProgressFn callback_;
  std::uint64_t total_;
  std::atomic<std::uint64_t> staged_{0}, gds_{0};
  std::atomic<bool> failed_{false};
};

std::string StagedText(const WaveReport& r) {
  return std::to_string(r.waves) + " waves, " + std::to_string(r.copies) + " copies through " +
         std::to_string(r.staging_bytes) + " bytes of pinned staging on " +
         std::to_string(r.streams) + " streams";
}

// SEGMENTS through the staging ring, each wave read by RUNTIME; a set STOP
// fails the next wave.
Result<LoadStats> RunWaves(ReadRuntime& runtime, const ReadJob& job, const DeviceLoad& load,
                           std::span<const DeviceTensor> local,
                           std::span<const Segment> segments, DeviceProgress& progress,
                           const std::atomic<bool>* stop, WaveReport& report) {
  const LoaderOptions& options = runtime.options();
  return RunDeviceWaves(
      load.cuda, local, segments, WaveOptions{options.staging_bytes, options.device_streams},
      [&](std::span<const Segment> wave) -> Result<LoadStats> {
        if (stop != nullptr && stop->load()) {
          return MakeError(ErrorCode::kCancelled, "", "", "stopped: a cuFile read failed");
        }
        ReadJob wave_job{job.files, {}, job.tensors, nullptr, nullptr, progress.ForWave(),
                         job.settings};
        auto got = runtime.Read(wave_job, wave);
        if (got) progress.WaveRead(got->bytes);
        return got;
      },
      &report);
}

// Registers a cuFile handle for every file that has O_DIRECT segments;
// a file that cannot have one is staged, its reason added to NOTES.
void RegisterFiles(std::span<const Segment> marked, FileTable& files, GdsHandles& handles,
                   std::vector<std::string>& notes) {
  std::vector<char> wanted(files.size(), 0);
  for (const Segment& s : marked) {
    if (s.direct && s.length > 0) wanted[s.file] = 1;
  }
  for (std::uint32_t f = 0; f < files.size(); ++f) {
    if (!wanted[f]) continue;
    const int fd = files.fd(f, true);
    if (fd < 0) {
      notes.push_back(files.path(f) + ": no O_DIRECT descriptor");
    } else if (Status s = handles.Register(f, fd); !s) {
      notes.push_back(files.path(f) + ": " + s.error().detail);
    }
  }
}

std::string GdsText(const GdsReport& r, unsigned threads, const std::string& registered) {
  if (r.reads == 0) return "GDS: no aligned O_DIRECT range to read";
  return "GDS: " + std::to_string(r.reads) + " cuFileRead of " + std::to_string(r.bytes) +
         " bytes on " + std::to_string(threads) + " threads, " + registered;
}

// LoadStats of a load with cuFile: the staged part's (STAGED; REPORT says
// how many waves it took) plus the cuFile reads' (R, on THREADS threads).
LoadStats WithGdsReads(LoadStats stats, const GdsReport& r, const WaveReport& report,
                       unsigned threads, IoMode mode, const std::string& registered,
                       const std::vector<std::string>& notes) {
  if (report.waves == 0) {
    stats.mode = mode;
    stats.threads = threads;
    stats.backend_reason = "every byte read by cuFile";
  }
  stats.bytes += r.bytes;
  stats.bytes_read += r.bytes;
  stats.bytes_direct += r.bytes;
  stats.read_ops += r.reads;
  stats.short_reads += r.short_reads;
  stats.transfer = GdsText(r, threads, registered) + "; staged: " +
                   (report.waves > 0 ? StagedText(report) : std::string("nothing"));
  for (const std::string& note : notes) stats.transfer += "; not by GDS: " + note;
  return stats;
}

// Runs READ on a thread of its own while the calling thread goes on (or
// first, when there is no thread to spare or nothing else to do: !ALONGSIDE).
// The thread, if any, is returned to be joined.
std::thread StartBeside(const std::function<void()>& read, bool alongside) {
  if (alongside) {
    try {
      return std::thread(read);
    } catch (const std::system_error&) {
      // no thread to spare: one after the other
    }
  }
  read();
  return {};
}

// The load with a cuFile session: aligned O_DIRECT ranges by cuFileRead
// (on a thread of their own), the rest through the waves (this thread).
Result<LoadStats> LoadWithGds(ReadRuntime& runtime, const ReadJob& job, const DeviceLoad& load,
                              std::span<const DeviceTensor> local,
                              std::span<const Segment> segments, DeviceProgress& progress) {
  const CuFileSession& cufile = *load.gds->session;
  FileTable& files = *job.files;
  std::vector<Segment> marked(segments.begin(), segments.end());
  auto mode = MarkResidency(marked, files, job.settings.mode);
  if (!mode) return std::move(mode).error();
  std::vector<std::string> notes;
  GdsHandles handles(cufile, files.size());
  RegisterFiles(marked, files, handles, notes);
  const GdsSplit split = SplitForGds(local, marked, handles.handles(),
                                     std::max(files.alignment(), kGdsAlignment),
                                     runtime.options().chunk_size);
  GdsBuffer buffer(cufile);
  std::string registered = "caller's buffers not registered";
  if (!split.reads.empty() && !load.owned.empty()) {
    Status s = buffer.Register(load.owned.data(), load.owned.size());
    registered = s ? "destination registered"
                   : "destination not registered (" + s.error().detail + ")";
  }
  std::vector<std::string> paths;
  for (std::uint32_t f = 0; f < files.size(); ++f) paths.push_back(files.path(f));
  const unsigned threads = static_cast<unsigned>(std::clamp<std::size_t>(
      runtime.threads(), 1, std::max<std::size_t>(split.reads.size(), 1)));

  std::atomic<bool> stop{false};
  CancelWatch watch(job.settings.cancel, &stop);
  std::optional<Result<GdsReport>> gds;
  auto run_gds = [&]() noexcept {
    try {
      GdsRunOptions run{threads, buffer.base(), &stop,
                        [&progress](std::uint64_t n) { progress.GdsRead(n); }};
      gds = RunGdsReads(cufile, *load.cuda, split.reads, GdsFiles{handles.handles(), paths},
                        local, run);
    } catch (const std::bad_alloc&) {
      stop.store(true);
      gds = OutOfMemory();
    }
  };
  std::thread gds_thread = StartBeside(run_gds, !split.staged.empty());
  WaveReport report;
  auto staged = RunWaves(runtime, job, load, split.staged, split.staged_segments, progress,
                         &stop, report);
  if (!staged) stop.store(true);
  if (gds_thread.joinable()) gds_thread.join();

  if (Status s = CheckCancel(job.settings.cancel); !s) return std::move(s).error();
  if (!*gds) return std::move(*gds).error();
  if (!staged) return staged;
  progress.Finish();
  return WithGdsReads(std::move(*staged), **gds, report, threads, job.settings.mode, registered,
                      notes);
}

}  // namespace

const GdsState* GdsAccess::For(IoMode mode) {
  if (!asked_) return nullptr;
  if (mode == IoMode::kBuffered) {
    buffered_.reason = NotUsed("--buffered: cuFile reads only what is read with O_DIRECT");
    return &buffered_;
  }
  if (!opened_) {
    opened_.emplace();
    auto session = CuFileSession::Open();
    if (session) {
      opened_->session = std::move(*session);
    } else {
      opened_->reason = NotUsed(session.error().detail);
    }
  }
  return &*opened_;
}

Result<LoadStats> LoadThroughDevice(ReadRuntime& runtime, const ReadJob& job,
                                    const DeviceLoad& load, std::span<const DeviceTensor> local,
                                    std::span<const Segment> segments) {
  std::uint64_t total = 0;
  for (const Segment& s : segments) total += s.length * s.count;
  DeviceProgress progress(job.progress, total);
  Result<LoadStats> stats = LoadStats{};
  if (load.gds != nullptr && load.gds->session && job.files != nullptr) {
    stats = LoadWithGds(runtime, job, load, local, segments, progress);
  } else {
    WaveReport report;
    stats = RunWaves(runtime, job, load, local, segments, progress, nullptr, report);
    if (stats) {
      stats->transfer = StagedText(report);
      if (load.gds != nullptr && !load.gds->reason.empty()) {
        stats->transfer += "; " + load.gds->reason;
      }
    }
  }
  if (stats) stats->device = DeviceName(runtime.options().device);
  return stats;
}

Result<LoadStats> ReadSegments(ReadRuntime& runtime, const ReadJob& job, const DeviceLoad& load,
                               std::span<const DeviceTensor> local,
                               std::span<const Segment> segments) {
  if (!load.cuda) return runtime.Read(job, segments);
  return LoadThroughDevice(runtime, job, load, local, segments);
}

std::vector<DeviceTensor> LocalTensors(std::span<const LoadItem> items,
                                       std::span<std::byte* const> data) {
  std::vector<DeviceTensor> out;
  out.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    out.push_back({data[i], items[i].slice.size, items[i].slice.zero_fill,
                   items[i].source->name});
  }
  return out;
}

std::string DeviceMemory(const Device& device) {
  return "device memory on " + DeviceName(device) + " (one cudaMalloc)";
}

}  // namespace shardload
