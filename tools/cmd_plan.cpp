// `shardload plan PATH --world W --plan P [--rank R]`: a tensor-parallel dry
// run. For each rank (or only --rank), the local shape of every tensor it
// loads, the bytes it receives, the bytes it would read and the reads it
// would submit, computed from the headers without reading tensor data.
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
     {"--chunk-size", "BYTES", "largest single read (default 4MiB)"},
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

std::string RankJson(const RankPlan& p) {
  std::string tensors;
  for (const PlannedTensor& t : p.tensors) {
    tensors += fmt::format("{}{{\"name\":{},\"dtype\":{},\"shape\":{},\"bytes\":{},\"rule\":{}}}",
                           tensors.empty() ? "" : ",", JsonString(t.name),
                           JsonString(DTypeName(t.dtype)), ShapeText(t.shape, "[", "]"),
                           t.bytes, JsonString(t.rule));
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
    fmt::print("  {:<50} {:<5} {:<18} {:>12}  {}\n", t.name, DTypeName(t.dtype),
               ShapeText(t.shape, "(", ")"), t.bytes, t.rule);
  }
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
  LoadOptions options;
  auto mode = ReadModeFlags(*args);
  if (!mode) return UsageError(kPlanSpec, "--direct and --buffered exclude each other");
  options.mode = *mode;
  if (int rc = ReadReadFlags(kPlanSpec, *args, options); rc != kExitOk) return rc;
  if (auto text = args->Get("--chunk-size")) {
    auto v = ParseBytes(*text);
    if (!v || *v == 0) return UsageError(kPlanSpec, "--chunk-size needs a positive byte count");
    options.chunk_size = *v;
  }
  Selection selection;
  selection.globs = args->GetAll("--select");
  auto loader = Loader::Open(args->Positional(0), options);
  if (!loader) return ReportError(loader.error(), json);
  unsigned first = tp.rank_given ? tp.tp.rank : 0;
  unsigned last = tp.rank_given ? tp.tp.rank + 1 : tp.tp.world;
  std::string ranks;
  for (unsigned r = first; r < last; ++r) {
    TensorParallel one = tp.tp;
    one.rank = r;
    auto plan = loader->Plan(selection, one);
    if (!plan) return ReportError(plan.error(), json);
    if (json) {
      ranks += (ranks.empty() ? "" : ",") + RankJson(*plan);
    } else {
      PrintRank(*plan, args->Has("--tensors"));
    }
  }
  if (json) {
    fmt::print("{{\"world\":{},\"plan\":{},\"direct\":{},\"mode\":{},\"ranks\":[{}]}}\n",
               tp.tp.world, JsonString(tp.tp.plan),
               options.mode == IoMode::kDirect ? "true" : "false",
               JsonString(IoModeName(options.mode)), ranks);
  }
  return kExitOk;
}

}  // namespace shardload::cli
