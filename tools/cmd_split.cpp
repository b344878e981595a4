// `shardload split PATH --world W --plan P --out OUT`: writes OUT/rank-<r>/
// for every rank r of W, each a safetensors checkpoint of that rank's slices
// (original names, local shapes, the source's shard metadata plus tp_rank
// and tp_world). One rank at a time: memory holds one rank's tensors.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "tp_flags.h"

namespace shardload::cli {

const CommandSpec kSplitSpec = {
    "split",
    "PATH --world W --plan P --out OUT [--select GLOB]... [--threads N] [--direct | --buffered] "
    "[--max-shard-size BYTES] [--json]",
    "Write one safetensors checkpoint per tensor-parallel rank (OUT/rank-<r>/).",
    {"PATH"},
    {WorldFlag(),
     PlanFlag(),
     {"--out", "OUT", "output directory (required); gets rank-0/ .. rank-<W-1>/"},
     {"--select", "GLOB", "split only matching tensors; repeatable", true},
     {"--threads", "N", "worker threads (default: one per CPU)"},
     DirectFlag(),
     BufferedFlag(),
     {"--max-shard-size", "BYTES", "shard size limit of each rank's checkpoint (default 5GB)"},
     {"--json", "", "print one JSON object on the last line of stdout"}},
};

namespace {

struct SplitFlags {
  TpFlags tp;
  LoaderOptions loader;
  LoadRequest request;  // its rank: each in turn
  std::string out;
  std::uint64_t max_shard_size = 5'000'000'000ULL;
  bool json = false;
};

int ReadSplitFlags(const Args& args, SplitFlags& flags) {
  if (args.Has("--rank")) return UsageError(kSplitSpec, "split writes every rank; no --rank");
  if (int rc = ReadTpFlags(kSplitSpec, args, false, flags.tp); rc != kExitOk) return rc;
  if (!flags.tp.enabled) return UsageError(kSplitSpec, "split needs --plan P and --world W");
  auto out = args.Get("--out");
  if (!out || out->empty()) return UsageError(kSplitSpec, "split needs --out OUT");
  flags.out = *out;
  if (auto text = args.Get("--threads")) {
    auto v = ParseUint(*text);
    if (!v || *v == 0 || *v > 1024) return UsageError(kSplitSpec, "--threads needs 1..1024");
    flags.loader.threads = static_cast<unsigned>(*v);
  }
  if (auto text = args.Get("--max-shard-size")) {
    auto v = ParseBytes(*text);
    if (!v || *v == 0) return UsageError(kSplitSpec, "--max-shard-size needs a positive size");
    flags.max_shard_size = *v;
  }
  auto mode = ReadModeFlags(args);
  if (!mode) return UsageError(kSplitSpec, "--direct and --buffered exclude each other");
  flags.request.mode = *mode;
  flags.request.selection.globs = args.GetAll("--select");
  flags.request.tp = flags.tp.tp;
  flags.json = args.Has("--json");
  return kExitOk;
}

// The shards' common __metadata__ (nothing when they differ), with tp_rank
// and tp_world set.
Metadata RankMetadata(const Checkpoint& checkpoint, unsigned rank, unsigned world) {
  Metadata out;
  const std::vector<ShardInfo>& shards = checkpoint.shards();
  bool agree = !shards.empty();
  for (const ShardInfo& s : shards) agree = agree && s.metadata == shards.front().metadata;
  if (agree && shards.front().metadata) {
    for (const auto& kv : *shards.front().metadata) {
      if (kv.first != "tp_rank" && kv.first != "tp_world") out.push_back(kv);
    }
  }
  out.emplace_back("tp_rank", std::to_string(rank));
  out.emplace_back("tp_world", std::to_string(world));
  return out;
}

// Loads rank R's slices and writes them to OUT/rank-R; returns the JSON
// summary of the rank.
Result<std::string> SplitRank(Loader& loader, const SplitFlags& flags, unsigned rank) {
  auto start = std::chrono::steady_clock::now();
  LoadRequest request = flags.request;
  request.tp.rank = rank;
  const TensorParallel& tp = request.tp;
  auto loaded = loader.Load(request);
  if (!loaded) return std::move(loaded).error();
  std::vector<TensorData> tensors;
  for (const LoadedTensor& t : loaded->tensors()) {
    tensors.push_back(TensorData{t.name, t.dtype, t.shape, t.data, {}});
  }
  CheckpointWriteOptions options;
  options.max_shard_size = flags.max_shard_size;
  options.shard_metadata = RankMetadata(loader.checkpoint(), rank, tp.world);
  std::string dir = flags.out + "/rank-" + std::to_string(rank);
  if (Status s = WriteCheckpoint(dir, tensors, options); !s) return std::move(s).error();
  const LoadStats& st = loaded->stats();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!flags.json) {
    fmt::print("rank {} of {}: {} tensors, {} ({} read) -> {} in {:.2f} s\n", rank, tp.world,
               st.tensors, HumanBytes(st.bytes), HumanBytes(st.bytes_read), dir, seconds);
  }
  return fmt::format(
      "{{\"rank\":{},\"dir\":{},\"tensors\":{},\"bytes\":{},\"bytes_read\":{},\"seconds\":{:.6f}}}",
      rank, JsonString(dir), st.tensors, st.bytes, st.bytes_read, seconds);
}

}  // namespace

int RunSplit(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kSplitSpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  SplitFlags flags;
  if (int rc = ReadSplitFlags(*args, flags); rc != kExitOk) return rc;
  auto loader = Loader::Open(args->Positional(0), flags.loader);
  if (!loader) return ReportError(loader.error(), flags.json);
  // Check the plan for every tensor before writing anything.
  if (auto plan = loader->Plan(flags.request); !plan) {
    return ReportError(plan.error(), flags.json);
  }
  std::string ranks;
  for (unsigned r = 0; r < flags.tp.tp.world; ++r) {
    auto summary = SplitRank(*loader, flags, r);
    if (!summary) return ReportError(summary.error(), flags.json);
    ranks += (ranks.empty() ? "" : ",") + *summary;
  }
  if (flags.json) {
    fmt::print("{{\"world\":{},\"plan\":{},\"out\":{},\"ranks\":[{}]}}\n", flags.tp.tp.world,
               JsonString(flags.tp.tp.plan.Describe()), JsonString(flags.out), ranks);
  }
  return kExitOk;
}

}  // namespace shardload::cli
