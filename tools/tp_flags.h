// The tensor-parallel flags shared by `load`, `plan` and `split`: --rank,
// --world and --plan, with RANK and WORLD_SIZE (as torchrun sets them) read
// from the environment when the flags are absent.
// Thread-compatible.
#pragma once

#include <string>

#include "cli.h"
#include "shardload/loader.h"

namespace shardload::cli {

struct TpFlags {
  bool enabled = false;     // --plan given (then world is known)
  bool rank_given = false;  // --rank or RANK
  TensorParallel tp;
};

// Help lines for the three flags.
FlagSpec RankFlag();
FlagSpec WorldFlag();
FlagSpec PlanFlag();

// Fills OUT from ARGS. With RANK_REQUIRED, a missing rank is 0 when the world
// is 1 and a usage error otherwise. `--plan hf` is PlanSource::Hf(); any
// other value is a file, read here once (PlanSource::FromFileContent: our
// plan JSON when it has "tp_plan_version", else a Hugging Face config).
// Returns kExitOk, or kExitUsage after printing the problem, or the exit
// code of an unreadable plan file (reported, as JSON with --json).
int ReadTpFlags(const CommandSpec& spec, const Args& args, bool rank_required, TpFlags& out);

// `"rank":R,"world":W,"plan":"P"` for JSON reports.
std::string TpJsonFields(const TensorParallel& tp);

}  // namespace shardload::cli
