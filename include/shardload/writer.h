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

#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/metadata.h"

namespace shardload {

// Fills `out` with the tensor's bytes starting at byte `offset` of the tensor.
// Called with consecutive offsets, in chunks of at most 8 MiB. An exception
// it throws fails the write (kInternal) and does not escape the writer.
using TensorFiller =
    std::function<void(std::uint64_t offset, std::span<std::byte> out)>;

// One tensor to write. Its bytes come from `bytes`, or from `fill` when set
// (then `bytes` is ignored), so that checkpoints larger than memory can be
// generated. The name must be valid UTF-8 and not "__metadata__".
struct TensorData {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;
  TensorFiller fill;
};

// Writes one .safetensors file at `path`, atomically: a failed write leaves
// the previous file (or none) and no temporary file. Tensor data is streamed
// through an 8 MiB buffer. Refuses, before creating anything:
//   kInvalidArgument     duplicate tensor names or metadata keys, the name
//                        "__metadata__", `bytes` not of the size that dtype
//                        and shape imply;
//   kInvalidUtf8         a name, metadata key or value not valid UTF-8;
//   kMisalignedSlice     a sub-byte dtype whose elements do not fill whole
//                        bytes (F4: odd count; F6: not a multiple of 4);
//   kValidationOverflow  sizes that overflow 64 bits;
//   kHeaderTooLarge      a header above 100,000,000 bytes.
// System call failures are kIoError (errno in sys_errno). Metadata keys are
// written in the given order (the reference writer's order is random for
// more than one key).
Status WriteSafetensors(const std::string& path,
                        std::span<const TensorData> tensors,
                        const std::optional<Metadata>& metadata = std::nullopt);

struct CheckpointWriteOptions {
  // huggingface_hub's greedy split, in the order given: a tensor larger than
  // this many bytes becomes a shard of its own right away (so it may precede
  // the shard being filled); otherwise a new shard starts when the tensor
  // would push the current one past the limit.
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
// they fit in one shard (also when there are none), else shards plus index.
// The index is transformers' json.dumps(index, indent=2, sort_keys=True)
// + "\n" of {"metadata": {"total_size": tensor bytes}, "weight_map"}.
// Every tensor is validated (as WriteSafetensors, names unique across
// shards) before any file is written; each file is written atomically, the
// shards first and the index last, so a failure leaves no index (shards
// written before it stay). Files of an earlier checkpoint in `dir` that this
// one does not overwrite are left alone.
Status WriteCheckpoint(const std::string& dir,
                       std::span<const TensorData> tensors,
                       const CheckpointWriteOptions& options = {});

}  // namespace shardload
