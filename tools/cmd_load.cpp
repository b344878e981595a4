// `shardload load PATH ...`: loads a checkpoint (or a selection of it) into
// memory with the parallel engine, reports throughput, optionally reloads
// into the same memory (--repeat) and saves what was loaded (--save). With
// --plan, loads only tensor-parallel rank --rank of --world's slices. With
// --device cuda:N, the tensors land in that CUDA device's memory
// (docs/device.md). Under LOCAL_RANK / LOCAL_WORLD_SIZE and a job id, the
// node's ranks cooperate (coop_flags.h, docs/cooperate.md); with --mpi (under
// mpirun), the rank and world come from MPI and the node's ranks cooperate
// over an MPI communicator (tools/mpi/).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "commands.h"
#include "coop_flags.h"
#include "mpi_launch.h"
#include "read_flags.h"
#include "tp_flags.h"
#include "shardload/loader.h"
#include "shardload/writer.h"

namespace shardload::cli {

const CommandSpec kLoadSpec = {
    "load",
    "PATH [--select GLOB]... [--threads N] [--queue-depth N] [--chunk-size BYTES] "
    "[--direct | --buffered] [--max-over-read R] [--read-strategy S] [--repeat N] [--save OUT] "
    "[--verify MANIFEST] [--dtype F32|F16|BF16] "
    "[--rank R --world W --plan P] [--mpi] [--job ID | --no-cooperate] [--peer-timeout S] "
    "[--staging BYTES] [--device cpu|cuda:N [--gds]] [--json]",
    "Load a checkpoint into memory in parallel and report the throughput.",
    {"PATH"},
    {{"--select", "GLOB", "load only matching tensors (`*` one name component, `**` any); repeatable", true},
     {"--threads", "N", "worker threads (default: one per CPU)"},
     {"--queue-depth", "N", "reads in flight per worker (default 32)"},
     {"--chunk-size", "BYTES", "largest single read (at least 4KiB; default 4MiB)"},
     DirectFlag(),
     BufferedFlag(),
     {"--backend", "NAME", "auto (default), io_uring or pread"},
     MaxOverReadFlag(),
     ReadStrategyFlag(),
     {"--repeat", "N", "load N times into the same memory; reports steady_gb_per_s"},
     {"--save", "OUT", "write what was loaded to directory OUT"},
     {"--max-shard-size", "BYTES", "shard size limit for --save (default 5GB)"},
     {"--verify", "MANIFEST", "check the SHA-256 of the files read (see `verify`); a mismatch fails"},
     {"--dtype", "DTYPE", "load floating-point tensors as F32, F16 or BF16"},
     RankFlag(),
     WorldFlag(),
     PlanFlag(),
     {"--mpi", "", "under mpirun: rank and world from MPI_COMM_WORLD; the node's ranks read "
                   "each byte once between them (docs/cooperate.md)"},
     {"--device", "DEV", "cpu (default) or cuda:N: load into that CUDA device's memory"},
     JobFlag(),
     NoCooperateFlag(),
     PeerTimeoutFlag(),
     {"--staging", "BYTES",
      "the node's shared staging of a cooperative load (default 1GiB), or the pinned staging "
      "ring of a device load (default 256MiB)"},
     {"--gds", "", "GPUDirect Storage: O_DIRECT ranges read by cuFile straight to the device (else staged, reason reported)"},
     {"--json", "", "print one JSON object on the last line of stdout"}},
};

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// A progress bar on stderr, drawn by whichever worker gets the lock.
class ProgressBar {
 public:
  void Start() { start_ = Clock::now(); }
  void Update(std::uint64_t done, std::uint64_t total) {
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    double elapsed = Seconds(start_);
    if (done < total && elapsed - last_draw_ < 0.1) return;
    last_draw_ = elapsed;
    double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    int filled = total ? static_cast<int>(30 * done / total) : 30;
    std::fprintf(stderr, "\r[%s%s] %s / %s  %.2f GB/s  ETA %.1fs ",
                 std::string(filled, '#').c_str(), std::string(30 - filled, ' ').c_str(),
                 HumanBytes(done).c_str(), HumanBytes(total).c_str(), rate / 1e9, eta);
    drawn_ = true;
  }
  void Finish() {
    if (drawn_) std::fputs("\n", stderr);
    drawn_ = false;
  }

 private:
  std::mutex mu_;
  Clock::time_point start_;
  double last_draw_ = -1;
  bool drawn_ = false;
};

struct LoadFlags {
  LoaderOptions loader;
  LoadRequest request;  // its selection and rank: below
  Selection selection;
  std::uint64_t repeat = 1;
  std::uint64_t max_shard_size = 5'000'000'000ULL;
  bool json = false;
  TpFlags tp;
  std::string mpi_note;  // under --mpi: "rank R of W, node rank r of n"
};

// Fills `flags` from the parsed arguments; returns an exit code != 0 on misuse.
int ReadFlags(const Args& args, LoadFlags& flags) {
  auto uint_flag = [&](const char* name, std::uint64_t& out, bool bytes) -> bool {
    auto text = args.Get(name);
    if (!text) return true;
    auto v = bytes ? ParseBytes(*text) : ParseUint(*text);
    if (!v || *v == 0) return false;
    out = *v;
    return true;
  };
  std::uint64_t threads = 0, depth = flags.loader.queue_depth;
  if (!uint_flag("--threads", threads, false) || threads > 1024) {
    return UsageError(kLoadSpec, "--threads needs a positive integer (at most 1024)");
  }
  if (!uint_flag("--queue-depth", depth, false) || depth > 4096) {
    return UsageError(kLoadSpec, "--queue-depth needs a positive integer (at most 4096)");
  }
  if (!uint_flag("--chunk-size", flags.loader.chunk_size, true) ||
      flags.loader.chunk_size < kMinChunkSize) {
    return UsageError(kLoadSpec, "--chunk-size needs a byte count of at least 4KiB");
  }
  if (!uint_flag("--repeat", flags.repeat, false)) {
    return UsageError(kLoadSpec, "--repeat needs a positive integer");
  }
  if (!uint_flag("--max-shard-size", flags.max_shard_size, true)) {
    return UsageError(kLoadSpec, "--max-shard-size needs a positive byte count");
  }
  std::string backend = args.Get("--backend").value_or("auto");
  if (backend == "io_uring") {
    flags.loader.backend = Backend::kIoUring;
  } else if (backend == "pread") {
    flags.loader.backend = Backend::kPread;
  } else if (backend != "auto") {
    return UsageError(kLoadSpec, "--backend must be auto, io_uring or pread");
  }
  if (!uint_flag("--staging", flags.loader.staging_bytes, true)) {
    return UsageError(kLoadSpec, "--staging needs a positive byte count");
  }
  if (auto device = args.Get("--device")) {
    auto parsed = ParseDevice(*device);
    if (!parsed) return UsageError(kLoadSpec, "--device: " + parsed.error().detail);
    flags.loader.device = *parsed;
  }
  if (flags.loader.device.is_cuda() && args.Has("--save")) {
    return UsageError(kLoadSpec, "--save writes host memory: it needs --device cpu");
  }
  flags.loader.gds = args.Has("--gds");
  flags.loader.threads = static_cast<unsigned>(threads);
  flags.loader.queue_depth = static_cast<unsigned>(depth);
  auto mode = ReadModeFlags(args);
  if (!mode) return UsageError(kLoadSpec, "--direct and --buffered exclude each other");
  flags.request.mode = *mode;
  if (int rc = ReadReadFlags(kLoadSpec, args, flags.request); rc != kExitOk) return rc;
  flags.request.verify = args.Get("--verify").value_or("");
  if (auto dtype = args.Get("--dtype")) {
    if (*dtype != "F32" && *dtype != "F16" && *dtype != "BF16") {
      return UsageError(kLoadSpec, "--dtype must be F32, F16 or BF16");
    }
    flags.request.dtype = ParseDType(*dtype);
  }
  flags.selection.globs = args.GetAll("--select");
  flags.json = args.Has("--json");
  return kExitOk;
}

std::optional<Metadata> CommonShardMetadata(const Checkpoint& ckpt) {
  if (ckpt.shards().empty()) return std::nullopt;
  const auto& first = ckpt.shards().front().metadata;
  for (const ShardInfo& s : ckpt.shards()) {
    if (s.metadata != first) return std::nullopt;
  }
  return first;
}

Status Save(const Loader& loader, const LoadedCheckpoint& loaded, const std::string& out,
            std::uint64_t max_shard_size) {
  std::vector<TensorData> tensors;
  tensors.reserve(loaded.tensors().size());
  for (const LoadedTensor& t : loaded.tensors()) {
    tensors.push_back(TensorData{t.name, t.dtype, t.shape, t.data, {}});
  }
  CheckpointWriteOptions options;
  options.max_shard_size = max_shard_size;
  options.shard_metadata = CommonShardMetadata(loader.checkpoint());
  return WriteCheckpoint(out, tensors, options);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// load --json's "mpi": the MPI library this build has, or null.
std::string MpiJson() {
  std::string version = MpiLibraryVersion();
  return version.empty() ? "null" : JsonString(version);
}

void PrintReport(const LoadFlags& flags, const LoadStats& first, double first_seconds,
                 const std::vector<double>& rates) {
  double gbps = first_seconds > 0 ? static_cast<double>(first.bytes) / first_seconds / 1e9 : 0;
  std::string steady = rates.empty() ? "" : fmt::format("{:.3f}", Median(rates));
  if (!flags.json) {
    fmt::print("loaded {} tensors, {} ({} read) in {:.3f} s: {:.2f} GB/s [{}, {} threads, {}]\n",
               first.tensors, HumanBytes(first.bytes), HumanBytes(first.bytes_read),
               first_seconds, gbps, BackendName(first.backend), first.threads, IoModeName(first.mode));
    fmt::print("read: {} with O_DIRECT, {} buffered\n", HumanBytes(first.bytes_direct),
               HumanBytes(first.bytes_buffered));
    if (!first.mode_note.empty()) fmt::print("mode: {}\n", first.mode_note);
    if (!rates.empty()) fmt::print("steady state over {} reloads: {} GB/s\n", rates.size(), steady);
    if (!first.backend_reason.empty()) fmt::print("backend: {}\n", first.backend_reason);
    if (!first.memory.empty()) fmt::print("memory: {}\n", first.memory);
    if (!first.transfer.empty()) fmt::print("device: {}: {}\n", first.device, first.transfer);
    if (!first.verified.empty()) fmt::print("verified: {}\n", first.verified);
    fmt::print("{}", CooperationText(first));
    if (flags.tp.enabled) {
      fmt::print("tensor parallel: rank {} of {}, plan {}\n", flags.tp.tp.rank, flags.tp.tp.world,
                 flags.tp.tp.plan.Describe());
    }
    if (!flags.mpi_note.empty()) fmt::print("mpi: {}, {}\n", MpiLibraryVersion(), flags.mpi_note);
    return;
  }
  std::string tp = flags.tp.enabled ? "," + TpJsonFields(flags.tp.tp) : "";
  std::string runs;
  for (double r : rates) runs += fmt::format("{}{:.3f}", runs.empty() ? "" : ",", r);
  fmt::print(
      "{{\"tensors\":{},\"bytes\":{},\"bytes_read\":{},\"seconds\":{:.6f},\"gb_per_s\":{:.3f},"
      "\"backend\":{},\"backend_reason\":{},\"memory\":{},\"device\":{},\"transfer\":{},"
      "\"threads\":{},\"direct\":{},\"mode\":{},"
      "\"bytes_direct\":{},\"bytes_buffered\":{},\"mode_note\":{},\"read_ops\":{},"
      "\"short_reads\":{},\"retries\":{},\"repeat\":{},\"mpi\":{}{}{}{}{}}}\n",
      first.tensors, first.bytes, first.bytes_read, first_seconds, gbps, JsonString(BackendName(first.backend)),
      JsonString(first.backend_reason), JsonString(first.memory), JsonString(first.device),
      JsonString(first.transfer), first.threads,
      first.bytes_direct > 0 ? "true" : "false", JsonString(IoModeName(first.mode)),
      first.bytes_direct, first.bytes_buffered, JsonString(first.mode_note),
      first.read_ops, first.short_reads, first.retries, flags.repeat, MpiJson(), tp,
      first.verified.empty() ? "" : ",\"verified\":" + JsonString(first.verified),
      rates.empty() ? "" : fmt::format(",\"steady_gb_per_s\":{},\"reload_gb_per_s\":[{}]", steady, runs),
      CooperationJson(first));
}

// Loads as FLAGS say (the tensor-parallel flags already read) and reports.
int LoadAndReport(const Args& args, LoadFlags& flags) {
  ProgressBar bar;
  if (::isatty(STDERR_FILENO)) {
    flags.request.progress = [&bar](std::uint64_t done, std::uint64_t total) { bar.Update(done, total); };
  }
  bar.Start();
  Clock::time_point start = Clock::now();
  Result<Loader> loader = Loader::Open(args.Positional(0), flags.loader);
  if (!loader) return ReportError(loader.error(), flags.json);
  LoadRequest& request = flags.request;
  request.selection = flags.selection;
  if (flags.tp.enabled) request.tp = flags.tp.tp;
  Result<LoadedCheckpoint> loaded = loader->Load(request);
  double first_seconds = Seconds(start);
  bar.Finish();
  if (!loaded) return ReportError(loaded.error(), flags.json);
  LoadStats first = loaded->stats();
  std::vector<double> rates;
  for (std::uint64_t i = 1; i < flags.repeat; ++i) {
    bar.Start();
    Status s = loader->Reload(*loaded, request);
    bar.Finish();
    if (!s) return ReportError(s.error(), flags.json);
    const LoadStats& st = loaded->stats();
    rates.push_back(st.seconds > 0 ? static_cast<double>(st.bytes) / st.seconds / 1e9 : 0);
  }
  if (auto out = args.Get("--save")) {
    if (Status s = Save(*loader, *loaded, *out, flags.max_shard_size); !s) {
      return ReportError(s.error(), flags.json);
    }
  }
  PrintReport(flags, first, first_seconds, rates);
  return kExitOk;
}

// The flags `load --mpi` refuses (--rank, --world: MPI gives them; --job)
// or reads as without MPI (--peer-timeout, --staging), never the
// environment's LOCAL_RANK rendezvous. ALONE: --no-cooperate.
int ReadMpiFlags(Args& args, LoadFlags& flags, bool& alone) {
  if (args.Has("--rank") || args.Has("--world")) {
    return UsageError(kLoadSpec, "--mpi takes the rank and world from MPI_COMM_WORLD: "
                                 "drop --rank and --world");
  }
  if (args.Has("--job")) {
    return UsageError(kLoadSpec, "--mpi: the node's ranks meet over MPI, not a --job id");
  }
  alone = args.Has("--no-cooperate");
  args.values_["--no-cooperate"] = {""};  // ReadCoopFlags then stops before the environment
  return ReadCoopFlags(kLoadSpec, args, flags.loader.staging_bytes, flags.request.cooperate);
}

// `load --mpi`: MPI_COMM_WORLD gives --rank and --world, the node's ranks
// cooperate over an MPI communicator (not with --no-cooperate). A failing
// rank prints its error and exits without MPI_Finalize: mpirun then ends the
// job's other ranks (which may be waiting for it in a rendezvous, where
// MPI_Finalize would wait for them forever), and its message says why.
int RunUnderMpi(Args& args, LoadFlags& flags) {
  bool alone = false;
  if (int rc = ReadMpiFlags(args, flags, alone); rc != kExitOk) return rc;
  Result<MpiJob> job = MpiStart();
  if (!job) return ReportError(job.error(), flags.json);
  if (args.Has("--plan")) {
    args.values_["--rank"] = {std::to_string(job->rank)};
    args.values_["--world"] = {std::to_string(job->world)};
  }
  flags.mpi_note = fmt::format("rank {} of {}, node rank {} of {}", job->rank, job->world,
                               job->node->rank(), job->node->size());
  int rc = ReadTpFlags(kLoadSpec, args, true, flags.tp);
  if (rc == kExitOk) {
    if (!alone) flags.request.cooperate.group = std::move(job->node);
    rc = LoadAndReport(args, flags);
  }
  flags.request.cooperate.group.reset();  // every copy of the communicator gone
  job->node.reset();
  std::fflush(stdout);
  std::fflush(stderr);
  if (rc == kExitOk) MpiFinish();
  return rc;
}

}  // namespace

int RunLoad(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kLoadSpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  LoadFlags flags;
  if (int rc = ReadFlags(*args, flags); rc != kExitOk) return rc;
  if (args->Has("--mpi")) return RunUnderMpi(*args, flags);
  if (int rc = ReadTpFlags(kLoadSpec, *args, true, flags.tp); rc != kExitOk) return rc;
  if (int rc = ReadCoopFlags(kLoadSpec, *args, flags.loader.staging_bytes,
                             flags.request.cooperate);
      rc != kExitOk) {
    return rc;
  }
  return LoadAndReport(*args, flags);
}

}  // namespace shardload::cli
