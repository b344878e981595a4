// Builders for the index tests: small valid safetensors shards with known
// layout, index JSON text, and error-message checks.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload::test {

struct FakeTensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<std::uint64_t> shape = {2};
};

// Bytes of a tensor of this dtype and shape.
std::uint64_t BytesOf(const FakeTensor& t);

// A JSON string literal for `s` (escapes quotes, backslashes, controls).
std::string JsonString(std::string_view s);

// A valid safetensors file: tensors laid out contiguously in the given order,
// header unpadded; data byte i is i % 251. `metadata_json` (an object text)
// becomes __metadata__ when not empty.
std::string ShardBytes(const std::vector<FakeTensor>& tensors, std::string_view metadata_json = {});

// The absolute offset of tensor `name` in ShardBytes(tensors, metadata_json):
// 8 + N + begin.
std::uint64_t ExpectedOffset(const std::vector<FakeTensor>& tensors, std::string_view name,
                             std::string_view metadata_json = {});

struct ShardSpec {
  std::string name;  // relative to the index directory
  std::vector<FakeTensor> tensors;
  std::string metadata = R"({"format":"pt"})";  // __metadata__ JSON, or empty
};

// {"metadata": {"total_size": T, EXTRA}, "weight_map": {...}}; without
// total_size when nullopt. `extra_metadata` is raw JSON members ("k": v, ...).
std::string IndexJson(const std::vector<std::pair<std::string, std::string>>& weight_map,
                      std::optional<std::uint64_t> total_size,
                      std::string_view extra_metadata = {});

// Writes every shard (with its metadata) under `dir` and `dir`/`index_name` mapping each tensor
// to its shard, with total_size = the tensor bytes. Returns the index path.
std::string WriteSharded(const std::string& dir, const std::vector<ShardSpec>& shards,
                         const std::string& index_name = "model.safetensors.index.json");

// The standard two-shard checkpoint of these tests.
std::vector<ShardSpec> TwoShards(const std::string& prefix = "model");

// REQUIREs an error with `code` whose ToString() contains every string in
// `mentions`; returns it.
Error ExpectError(const Result<Checkpoint>& result, ErrorCode code,
                  const std::vector<std::string>& mentions);

void MakeSymlink(const std::string& target, const std::string& link);

}  // namespace shardload::test
