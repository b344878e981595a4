// `shardload plan PATH --world W --plan P [--rank R]`: a tensor-parallel dry
// run. For each rank (or only --rank), the local shape of every tensor it
// loads, the bytes it receives, the bytes it would read and the reads it
// would submit (and per tensor the read strategy), computed from the headers
// without reading tensor data. Every rank comes from one resolution of the
// plan (Loader::PlanRanks).
#include <fmt/format.h>

#include <string>
#include <vector>

#include "commands.h"
#include "shardload/loader.h"
#include "read_flags.h"
#include "tp_flags.h"

namespace shardload::cli {

const CommandSpec kPlanSpec = {
    "plan",
    "PATH --world W --plan P [--rank R] [--select GLOB]... [--direct | --buffered] "
    "[--max-over-read R] [--read-strategy S] [--tensors] [--json]",
    "Show what each tensor-parallel rank would load and read, without loading.",
    {"PATH"},
    {RankFlag(),
     WorldFlag(),
     PlanFlag(),
     {"--select", "GLOB", "plan only matching tensors; repeatable", true},
     {"--direct", "", "plan O_DIRECT reads (aligned supersets of the ranges)"},
     {"--buffered", "", "plan buffered reads (default: as the page cache holds the files now)"},
     {"--chunk-size", "BYTES", "largest single read (at least 4KiB; default 4MiB)"},
     MaxOverReadFlag(),
     ReadStrategyFlag(),
     {"--tensors", "", "list each rank's tensors with their local shapes"},
     {"--json", "", "print one JSON object on the last line of stdout"}},
};

namespace {

std::string ShapeText(const std::vector<std::uint64_t>& shape, const char* open,
                      const char* close) {
  std::string out = open;
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + close;
}

double Amplification(const RankPlan& p) {
  return p.bytes > 0 ? static_cast<double>(p.bytes_read) / static_cast<double>(p.bytes) : 1.0;
}

bool IsQuantized(const PlannedTensor& t) { return !t.follows.empty() || t.per != 0; }

// `"quant":{...}` of a quantized tensor (docs/cli.md), else nothing.
std::string QuantJson(const PlannedTensor& t) {
  if (!IsQuantized(t)) return "";
  std::string ranges;
  for (const QuantRange& r : t.ranges) {
    ranges += fmt::format("{}{{\"weight\":[{},{}],\"range\":[{},{}]}}", ranges.empty() ? "" : ",",
                          r.weight_begin, r.weight_end, r.begin, r.end);
  }
  return fmt::format(",\"quant\":{{\"follows\":{},\"split_dim\":{},\"per\":{},\"ranges\":[{}],"
                     "\"straddles\":{}}}",
                     t.follows.empty() ? "null" : JsonString(t.follows), t.split_dim, t.per,
                     ranges, t.straddles ? "true" : "false");
}

// ` follows W, dim 1 blocks [48,64) of 128, straddles` for --tensors.
std::string QuantText(const PlannedTensor& t) {
  if (!IsQuantized(t)) return "";
  std::string out = t.follows.empty() ? "" : "  follows " + t.follows;
  for (const QuantRange& r : t.ranges) {
    out += fmt::format("  dim {} [{},{}) = weight [{},{}) / {}", t.split_dim, r.begin, r.end,
                       r.weight_begin, r.weight_end, t.per);
  }
  return out + (t.straddles ? "  straddles (a block shared with another rank)" : "");
}

std::string RankJson(const RankPlan& p) {
  std::string tensors;
  for (const PlannedTensor& t : p.tensors) {
    tensors += fmt::format(
        "{}{{\"name\":{},\"dtype\":{},\"shape\":{},\"bytes\":{},\"rule\":{},"
        "\"strategy\":{},\"bytes_read\":{},\"read_ops\":{}{}}}",
        tensors.empty() ? "" : ",", JsonString(t.name), JsonString(DTypeName(t.dtype)),
        ShapeText(t.shape, "[", "]"), t.bytes, JsonString(t.rule), JsonString(t.strategy),
        t.bytes_read, t.read_ops, QuantJson(t));
  }
  return fmt::format(
      "{{\"rank\":{},\"num_tensors\":{},\"bytes\":{},\"local_bytes\":{},\"bytes_read\":{},"
      "\"read_ops\":{},"
      "\"read_amplification\":{:.4f},\"tensors\":[{}]}}",
      p.rank, p.tensors.size(), p.bytes, p.local_bytes, p.bytes_read, p.read_ops, Amplification(p), tensors);
}

void PrintRank(const RankPlan& p, bool list_tensors) {
  fmt::print("rank {} of {}: {} tensors, receives {}, reads {} ({:.3f}x) in {} reads\n", p.rank,
             p.world, p.tensors.size(), HumanBytes(p.bytes), HumanBytes(p.bytes_read),
             Amplification(p), p.read_ops);
  if (!list_tensors) return;
  for (const PlannedTensor& t : p.tensors) {
    fmt::print("  {:<50} {:<5} {:<18} {:>12}  {:<6} {}{}\n", t.name, DTypeName(t.dtype),
               ShapeText(t.shape, "(", ")"), t.bytes, t.strategy, t.rule, QuantText(t));
  }
}

// Rank --rank, or every rank from one resolution of the plan.
Result<std::vector<RankPlan>> PlanRequested(Loader& loader, const LoadRequest& request,
                                            const TpFlags& tp) {
  if (!tp.rank_given) return loader.PlanRanks(request);
  auto one = loader.Plan(request);
  if (!one) return std::move(one).error();
  return std::vector<RankPlan>{std::move(*one)};
}

}  // namespace

int RunPlan(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kPlanSpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  TpFlags tp;
  if (int rc = ReadTpFlags(kPlanSpec, *args, false, tp); rc != kExitOk) return rc;
  if (!tp.enabled) return UsageError(kPlanSpec, "plan needs --plan P and --world W");
  const bool json = args->Has("--json");
  LoaderOptions options;
  LoadRequest request;
  auto mode = ReadModeFlags(*args);
  if (!mode) return UsageError(kPlanSpec, "--direct and --buffered exclude each other");
  request.mode = *mode;
  if (int rc = ReadReadFlags(kPlanSpec, *args, request); rc != kExitOk) return rc;
  if (auto text = args->Get("--chunk-size")) {
    auto v = ParseBytes(*text);
    if (!v || *v < kMinChunkSize) {
      return UsageError(kPlanSpec, "--chunk-size needs a byte count of at least 4KiB");
    }
    options.chunk_size = *v;
  }
  request.selection.globs = args->GetAll("--select");
  request.tp = tp.tp;
  auto loader = Loader::Open(args->Positional(0), options);
  if (!loader) return ReportError(loader.error(), json);
  Result<std::vector<RankPlan>> plans = PlanRequested(*loader, request, tp);
  if (!plans) return ReportError(plans.error(), json);
  std::string ranks;
  for (const RankPlan& plan : *plans) {
    if (json) {
      ranks += (ranks.empty() ? "" : ",") + RankJson(plan);
    } else {
      PrintRank(plan, args->Has("--tensors"));
    }
  }
  if (json) {
    fmt::print("{{\"world\":{},\"plan\":{},\"direct\":{},\"mode\":{},\"ranks\":[{}]}}\n",
               tp.tp.world, JsonString(tp.tp.plan.Describe()),
               request.mode == IoMode::kDirect ? "true" : "false",
               JsonString(IoModeName(request.mode)), ranks);
  }
  return kExitOk;
}

}  // namespace shardload::cli
