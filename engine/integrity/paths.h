// How files of a checkpoint are named in a manifest: relative to the
// checkpoint's directory (the index's, or the shards').
// Thread-safe: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "shardload/checkpoint.h"

namespace shardload {

// A shard's manifest name: its name as the index writes it, "./" removed.
std::string ShardKey(const ShardInfo& shard);
// The directory manifest names are relative to ("." when unknown).
std::string CheckpointDir(const Checkpoint& checkpoint);
// True for a relative name without "..", empty or absolute components.
bool SafeRelativeName(std::string_view name);

}  // namespace shardload
