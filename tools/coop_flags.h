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

// Sets COOPERATE.group (ConnectLocal, which waits for the node's other
// ranks) when the environment asks for cooperation; with --staging,
// STAGING_BYTES (its value) is the node's staging; the test seam
// $SHARDLOAD_COOP_TEST_PAUSE (docs/testing.md) sets COOPERATE.test_pause.
// Returns kExitOk, a usage error, or the exit code of a failed rendezvous
// (reported, as JSON with --json).
int ReadCoopFlags(const CommandSpec& spec, const Args& args, std::uint64_t staging_bytes,
                  Cooperation& cooperate);

// "cooperation: ..." lines for the text report ("" when alone).
std::string CooperationText(const LoadStats& stats);
// `,"cooperation":{...}` for the JSON report ("" when alone).
std::string CooperationJson(const LoadStats& stats);

}  // namespace shardload::cli
