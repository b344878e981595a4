// The one way to assemble a Checkpoint from parts (its constructor is
// private): for the resolver, which has validated every part, and for tests
// that describe files they wrote themselves. Sorts tensors by name.
// Thread-safe: a pure function.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "shardload/checkpoint.h"

namespace shardload::internal {

struct CheckpointAccess {
  static Checkpoint Make(std::string path, std::string index_path,
                         std::vector<ShardInfo> shards, std::vector<TensorInfo> tensors,
                         std::vector<Warning> warnings, Metadata index_metadata) {
    return Checkpoint(std::move(path), std::move(index_path), std::move(shards),
                      std::move(tensors), std::move(warnings), std::move(index_metadata));
  }
};

}  // namespace shardload::internal
