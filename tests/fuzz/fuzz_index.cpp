// libFuzzer target for the index parser (index::ParseIndexJson): every input
// is index text. A refusal must name the index and carry an index code; an
// accepted index must hold only acceptable, sorted, distinct shard names,
// distinct tensor names, valid UTF-8 everywhere and in-range shard ids. A
// crash, a sanitizer report or a broken invariant is a finding.
// Thread-compatible: libFuzzer calls it from one thread.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_set>

#include "index/index_json.h"
#include "util/utf8.h"

namespace shardload::index {
namespace {

const std::string kPath = "fuzz.safetensors.index.json";

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_index invariant broken: %s\n", what);
  std::abort();
}

void CheckRefusal(const Error& error) {
  Require(error.path == kPath, "the error names the index");
  Require(!error.detail.empty(), "the error says why");
  Require(error.code == ErrorCode::kIndexJson || error.code == ErrorCode::kBadShardName ||
              error.code == ErrorCode::kDuplicateTensor,
          "an index error code");
  Require(error.ToString().find(kPath) != std::string::npos, "the message names the index");
}

void CheckShards(const ParsedIndex& index) {
  Require(std::adjacent_find(index.shard_names.begin(), index.shard_names.end(),
                             [](const std::string& a, const std::string& b) { return a >= b; }) ==
              index.shard_names.end(),
          "shard names are sorted and distinct");
  for (std::uint32_t i = 0; i < index.shard_names.size(); ++i) {
    Require(ShardNameProblem(index.shard_names[i]).empty(), "accepted shard names are fine");
    Require(IsValidUtf8(index.shard_names[i]), "shard names are UTF-8");
    Require(TensorsOfShard(index, i).count > 0, "every shard holds a tensor");
  }
}

void CheckAccepted(const ParsedIndex& index) {
  CheckShards(index);
  std::unordered_set<std::string_view> tensors;
  for (const IndexEntry& entry : index.entries) {
    Require(entry.shard < index.shard_names.size(), "shard ids are in range");
    Require(tensors.insert(entry.tensor).second, "tensor names are distinct");
    Require(IsValidUtf8(entry.tensor), "tensor names are UTF-8");
  }
  for (const auto& [key, value] : index.metadata) {
    Require(IsValidUtf8(key) && IsValidUtf8(value), "metadata is UTF-8");
  }
}

}  // namespace
}  // namespace shardload::index

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shardload::index;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  shardload::Result<ParsedIndex> index = ParseIndexJson(text, kPath);
  if (index.has_value()) {
    CheckAccepted(*index);
  } else {
    CheckRefusal(index.error());
  }
  return 0;
}
