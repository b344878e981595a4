// The loader's side of a cooperative load (LoadOptions::cooperate,
// docs/cooperate.md): what this member says about its job for the others to
// compare (JobIdentity), and the shard facts the schedule needs.
// Thread-safe: pure functions (JobIdentity reads the plan file and stats
// the shards).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coop/protocol.h"
#include "shardload/checkpoint.h"
#include "shardload/loader.h"

namespace shardload {

// The fields every member of a cooperative load must agree on: checkpoint
// (path, and each shard's size and modification time), plan (its name and a
// hash of its text), world, OPERATION ("load", "reload", "load_into") and
// SELECTION (in words), read mode and staging. PLAN_TEXT_PATH: the file the
// plan was read from ("" for a plan given as text or none).
coop::Identity JobIdentity(const Checkpoint& checkpoint, const LoadOptions& options,
                           unsigned rank, unsigned world, const PlanSource* plan,
                           const std::string& operation, const std::string& selection);

// "names hash <hex>": a digest of NAMES (a long list of tensor names).
std::string SelectionDigest(std::string_view names);

// Selection in words: "all", or its names and globs.
std::string SelectionText(const Selection& selection);

// Each shard's size as its header was read (the schedule never reads past it).
std::vector<std::uint64_t> ShardSizes(const Checkpoint& checkpoint);
std::vector<std::string> ShardPaths(const Checkpoint& checkpoint);

}  // namespace shardload
