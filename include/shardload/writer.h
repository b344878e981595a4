// Writes safetensors files in the reference layout (tensors sorted by dtype
// descending then name, compact JSON, __metadata__ first, header padded with
// spaces to a multiple of 8) and sharded checkpoints with an index, each file
// atomically (temporary file in the same directory, fsync, rename).
// Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/dtype.h"
#include "shardload/error.h"

namespace shardload {

// Fills `out` with the tensor's bytes starting at byte `offset` of the tensor.
using TensorFiller =
    std::function<void(std::uint64_t offset, std::span<std::byte> out)>;

// One tensor to write. Its bytes come from `bytes`, or from `fill` when set
// (so that checkpoints larger than memory can be generated).
struct TensorData {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;
  TensorFiller fill;
};

// Writes one .safetensors file at `path`. Refuses duplicate names and byte
// counts that do not match dtype and shape.
Status WriteSafetensors(const std::string& path,
                        std::span<const TensorData> tensors,
                        const std::optional<Metadata>& metadata = std::nullopt);

struct CheckpointWriteOptions {
  // A new shard starts when the next tensor would push the current one past
  // this many tensor bytes; a larger tensor gets a shard of its own.
  // Default: 5 GB (decimal), as transformers and huggingface_hub.
  std::uint64_t max_shard_size = 5'000'000'000ULL;
  // File name stem: "model" -> model.safetensors,
  // model-00001-of-00002.safetensors, model.safetensors.index.json.
  std::string prefix = "model";
  // __metadata__ of every shard. Default: none.
  std::optional<Metadata> shard_metadata;
  // Write an index even when everything fits in one shard.
  bool always_index = false;
};

// Writes `tensors` into directory `dir` (created if missing): one file when
// they fit in one shard, else shards plus index in the order given (greedy).
// The index holds {"metadata": {"total_size": tensor bytes}, "weight_map"}.
Status WriteCheckpoint(const std::string& dir,
                       std::span<const TensorData> tensors,
                       const CheckpointWriteOptions& options = {});

}  // namespace shardload
