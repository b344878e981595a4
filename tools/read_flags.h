// The read-strategy flags shared by `load` and `plan`: --max-over-read R and
// --read-strategy exact|staged|mixed|auto (LoadRequest::max_over_read,
// LoadRequest::read_strategy).
// Thread-compatible.
#pragma once

#include "cli.h"
#include "shardload/options.h"

namespace shardload::cli {

FlagSpec MaxOverReadFlag();
FlagSpec ReadStrategyFlag();

// Fills REQUEST from ARGS. Returns kExitOk, or kExitUsage after printing the
// problem.
int ReadReadFlags(const CommandSpec& spec, const Args& args, LoadRequest& request);

}  // namespace shardload::cli
