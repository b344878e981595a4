// The read-strategy flags shared by `load` and `plan`: --max-over-read R and
// --read-strategy exact|staged|mixed|auto (LoadOptions::max_over_read,
// LoadOptions::read_strategy).
// Thread-compatible.
#pragma once

#include "cli.h"
#include "shardload/loader.h"

namespace shardload::cli {

FlagSpec MaxOverReadFlag();
FlagSpec ReadStrategyFlag();

// Fills OPTIONS from ARGS. Returns kExitOk, or kExitUsage after printing the
// problem.
int ReadReadFlags(const CommandSpec& spec, const Args& args, LoadOptions& options);

}  // namespace shardload::cli
