// The writer's pure part: validates the tensors to write and lays out one
// safetensors file exactly as the reference writer does (docs/format.md §4),
// and plans sharded checkpoints (§5). No I/O.
// Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shardload/error.h"
#include "shardload/writer.h"

namespace shardload::format {

// Bytes of tensor `t` implied by dtype and shape, refusing what the reference
// reader would refuse (kValidationOverflow, kMisalignedSlice), invalid UTF-8
// names (kInvalidUtf8), the reserved name "__metadata__" and, when `t` has
// no filler, a `bytes` span of another length (kInvalidArgument).
// `path` only names the file in errors.
Result<std::uint64_t> ValidatedTensorSize(const std::string& path, const TensorData& t);

// The tensors of one file, by reference (fillers are not copied).
using TensorRefs = std::vector<const TensorData*>;

// Refuses two tensors with the same name (kInvalidArgument).
Status CheckUniqueNames(const std::string& path, const TensorRefs& tensors);

// One file's layout.
struct SafetensorsLayout {
  std::string header;                // 8-byte little-endian N, then N bytes of JSON
  std::vector<std::size_t> order;    // indices into the TensorRefs, in file order
  std::vector<std::uint64_t> sizes;  // bytes of each tensor, by TensorRefs index
  std::uint64_t data_size = 0;       // bytes after the header
};

// Validates `tensors` and `metadata` (UTF-8, unique keys) and lays them out:
// sorted by dtype descending then name bytes ascending, contiguous offsets,
// compact JSON with __metadata__ first, spaces up to a multiple of 8.
// Refuses N > 100,000,000 (kHeaderTooLarge).
Result<SafetensorsLayout> LayOutSafetensors(const std::string& path, const TensorRefs& tensors,
                                            const std::optional<Metadata>& metadata);

// huggingface_hub's greedy split (split_state_dict_into_shards_factory):
// in the given order, a tensor larger than `max_shard_size` becomes a shard
// of its own at once; otherwise a new shard starts when the tensor would push
// the current one past the limit. Returns tensor indices per shard; at least
// one (possibly empty) shard.
std::vector<std::vector<std::size_t>> SplitIntoShards(std::span<const std::uint64_t> sizes,
                                                      std::uint64_t max_shard_size);

// "PREFIX.safetensors" for one shard without index, else
// "PREFIX-0000I-of-0000N.safetensors" (1-based, 5 digits).
std::string ShardFileName(const std::string& prefix, std::size_t index, std::size_t count,
                          bool sharded);

// The index file text, as transformers writes it:
// json.dumps({"metadata": {"total_size": T}, "weight_map": {...}},
//            indent=2, sort_keys=True) + "\n".
// `weight_map` pairs (tensor, file) in any order; names valid UTF-8.
std::string IndexJson(std::uint64_t total_size,
                      std::vector<std::pair<std::string, std::string>> weight_map);

}  // namespace shardload::format
