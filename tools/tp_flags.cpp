// The tensor-parallel flags (see tp_flags.h).
// Thread-compatible: reads the environment (and the plan file).
#include "tp_flags.h"

#include <cstdlib>
#include <optional>

#include <fmt/format.h>

namespace shardload::cli {
namespace {

constexpr std::uint64_t kMaxWorld = 1 << 20;

// The flag's value, else the environment variable's, else nullopt.
std::optional<std::string> FlagOrEnv(const Args& args, const char* flag, const char* env) {
  if (auto v = args.Get(flag)) return v;
  if (const char* e = std::getenv(env); e != nullptr && *e != '\0') return std::string(e);
  return std::nullopt;
}

}  // namespace

FlagSpec RankFlag() {
  return {"--rank", "R", "tensor-parallel rank (default: $RANK)"};
}
FlagSpec WorldFlag() {
  return {"--world", "W", "tensor-parallel world size (default: $WORLD_SIZE)"};
}
FlagSpec PlanFlag() {
  return {"--plan", "P",
          "tensor-parallel plan: `hf` (the checkpoint's config.json), or a file holding a plan "
          "JSON (it has \"tp_plan_version\") or a Hugging Face config.json (docs/tp-plan.md)"};
}

int ReadTpFlags(const CommandSpec& spec, const Args& args, bool rank_required, TpFlags& out) {
  auto plan = args.Get("--plan");
  if (!plan) {
    if (args.Has("--rank") || args.Has("--world")) {
      return UsageError(spec, "--rank and --world need --plan");
    }
    return kExitOk;
  }
  if (plan->empty()) return UsageError(spec, "--plan needs a file, `hf` or a config.json");
  auto world_text = FlagOrEnv(args, "--world", "WORLD_SIZE");
  if (!world_text) return UsageError(spec, "--plan needs --world W (or WORLD_SIZE)");
  auto world = ParseUint(*world_text);
  if (!world || *world == 0 || *world > kMaxWorld) {
    return UsageError(spec, "--world (WORLD_SIZE) needs a positive integer, got '" +
                                *world_text + "'");
  }
  if (*plan == "hf") {
    out.tp.plan = PlanSource::Hf();
  } else {
    // The file's content says which kind of plan it is, not its name.
    auto source = PlanSource::FromFileContent(*plan);
    if (!source) return ReportError(source.error(), args.Has("--json"));
    out.tp.plan = std::move(*source);
  }
  out.enabled = true;
  out.tp.world = static_cast<unsigned>(*world);
  auto rank_text = FlagOrEnv(args, "--rank", "RANK");
  if (!rank_text) {
    if (rank_required && *world > 1) return UsageError(spec, "--plan needs --rank R (or RANK)");
    return kExitOk;
  }
  auto rank = ParseUint(*rank_text);
  if (!rank || *rank >= *world) {
    return UsageError(spec, "--rank (RANK) must be an integer below the world size " +
                                std::to_string(*world) + ", got '" + *rank_text + "'");
  }
  out.rank_given = true;
  out.tp.rank = static_cast<unsigned>(*rank);
  return kExitOk;
}

std::string TpJsonFields(const TensorParallel& tp) {
  return fmt::format("\"rank\":{},\"world\":{},\"plan\":{}", tp.rank, tp.world,
                     JsonString(tp.plan.Describe()));
}

}  // namespace shardload::cli
