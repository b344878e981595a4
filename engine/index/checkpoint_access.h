// The one way to assemble a Checkpoint from parts (its constructor is
// private): for the resolver, which has validated every part, and for tests
// that describe files they wrote themselves. Sorts tensors by name. Also the
// way to a checkpoint's kept shard files (index/shard_file.h).
// Thread-safe: a pure function.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "index/shard_file.h"
#include "shardload/checkpoint.h"

namespace shardload::internal {

struct CheckpointAccess {
  static Checkpoint Make(std::string path, std::string index_path,
                         std::vector<ShardInfo> shards, std::vector<TensorInfo> tensors,
                         std::vector<Warning> warnings, Metadata index_metadata,
                         std::vector<std::shared_ptr<const ShardFile>> files = {}) {
    return Checkpoint(std::move(path), std::move(index_path), std::move(shards),
                      std::move(tensors), std::move(warnings), std::move(index_metadata),
                      std::move(files));
  }
  // Shard SHARD's kept file: nullptr for a checkpoint assembled from parts
  // without files (tests), which is then opened by path.
  static const ShardFile* File(const Checkpoint& checkpoint, std::uint32_t shard) {
    return shard < checkpoint.files_.size() ? checkpoint.files_[shard].get() : nullptr;
  }
  static std::shared_ptr<const ShardFile> SharedFile(const Checkpoint& checkpoint,
                                                     std::uint32_t shard) {
    return shard < checkpoint.files_.size() ? checkpoint.files_[shard] : nullptr;
  }
};

}  // namespace shardload::internal
