// Parses a sharded checkpoint's *.safetensors.index.json (transformers /
// huggingface_hub layout: {"metadata": {...}, "weight_map": {tensor: shard}})
// and checks every shard name. Reads no shard.
// Thread-safe: pure functions.
//
// Accepted shape (anything else is kIndexJson naming the index and the key):
//   * strict RFC 8259 JSON in UTF-8 (no BOM, comments, NaN or NUL bytes);
//   * a top-level object; unknown top-level keys are ignored; no key of the
//     top-level object, of "metadata" or of "weight_map" may appear twice
//     (a tensor twice in weight_map is kDuplicateTensor);
//   * "weight_map" (required): an object of tensor name -> shard name string.
//     It may be empty: the checkpoint then has no tensors and no shards;
//   * "metadata" (optional; null is refused like any other non-object): an
//     object whose "total_size", when present, is an integer in [0, 2^64).
//     Every key is kept (strings as they are, other values as compact JSON);
//     values nest at most kMaxMetadataDepth containers.
//
// Shard names (kBadShardName otherwise) are plain relative paths that stay
// inside the index's directory, strict enough for both POSIX and Windows:
// not empty, no NUL, no backslash, not absolute, no drive letter ("C:"), no
// empty, "." or ".." component, and ending in ".safetensors".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload::index {

// Index files larger than this are refused (kIndexJson): the largest known
// index is 2.3 MB for 22,213 tensors.
inline constexpr std::uint64_t kMaxIndexFileSize = 512ull << 20;

// A metadata value may nest this many arrays/objects, so that the whole
// index nests at most 127 like the reference's serde_json limit.
inline constexpr std::size_t kMaxMetadataDepth = 125;

inline constexpr std::string_view kShardSuffix = ".safetensors";
inline constexpr std::string_view kIndexSuffix = ".safetensors.index.json";

struct IndexEntry {
  std::string tensor;
  std::uint32_t shard = 0;  // index into ParsedIndex::shard_names
};

struct ParsedIndex {
  // Distinct shard names of weight_map, sorted by bytes (as transformers'
  // sorted(set(weight_map.values()))).
  std::vector<std::string> shard_names;
  // weight_map in file order; tensor names are distinct.
  std::vector<IndexEntry> entries;
  std::optional<std::uint64_t> total_size;  // metadata.total_size
  Metadata metadata;                        // every metadata key, in file order
};

// Parses the text of an index. `index_path` only names the file in errors.
Result<ParsedIndex> ParseIndexJson(std::string_view json, const std::string& index_path);

// Reads (following symlinks; regular files only) and parses an index file.
Result<ParsedIndex> ReadIndexFile(const std::string& index_path);

// Empty when `shard` is an acceptable shard name, else why it is not.
std::string ShardNameProblem(std::string_view shard);

// The smallest tensor name mapped to `shard` and how many are (error
// messages name one tensor per shard). O(entries).
struct ShardTensors {
  std::string first;
  std::size_t count = 0;
};
ShardTensors TensorsOfShard(const ParsedIndex& index, std::uint32_t shard);

}  // namespace shardload::index
