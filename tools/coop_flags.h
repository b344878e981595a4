// Cooperation of a node's ranks from the command line (`load`): under a
// torchrun-style environment (LOCAL_RANK, LOCAL_WORLD_SIZE and a job id:
// TORCHELASTIC_RUN_ID or --job ID) the load joins the node's other ranks
// through ConnectLocal (docs/cooperate.md); --no-cooperate loads alone.
// The report's cooperation fields live here too (text and JSON), one place
// for other front ends (--mpi) to extend.
// Thread-compatible: reads the environment.
#pragma once

#include <string>

#include "cli.h"
#include "shardload/loader.h"

namespace shardload::cli {

// Help lines for --job, --no-cooperate, --peer-timeout.
FlagSpec JobFlag();
FlagSpec NoCooperateFlag();
FlagSpec PeerTimeoutFlag();

// Sets OPTIONS.cooperate.group (ConnectLocal, which waits for the node's
// other ranks) when the environment asks for cooperation; --staging (if
// given) is the node's staging. Returns kExitOk, a usage error, or the exit
// code of a failed rendezvous (reported, as JSON with --json).
int ReadCoopFlags(const CommandSpec& spec, const Args& args, LoadOptions& options);

// "cooperation: ..." lines for the text report ("" when alone).
std::string CooperationText(const LoadStats& stats);
// `,"cooperation":{...}` for the JSON report ("" when alone).
std::string CooperationJson(const LoadStats& stats);

}  // namespace shardload::cli
