// Checkpoints written by WriteCheckpoint / WriteSafetensors open with
// Checkpoint::Open, and every tensor's (offset, size) holds its bytes.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "index/index_fixtures.h"
#include "shardload/checkpoint.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

struct Source {
  std::vector<std::string> names;
  std::vector<std::vector<std::byte>> bytes;
  std::vector<TensorData> tensors;
};

// `n` tensors of mixed dtypes and random shapes, with random bytes.
Source MakeSource(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const DType dtypes[] = {DType::kF32, DType::kBF16, DType::kU8,     DType::kI64,
                          DType::kF16, DType::kBool, DType::kF8E4M3, DType::kC64};
  Source s;
  s.bytes.resize(n);
  for (int i = 0; i < n; ++i) {
    TensorData t;
    t.name = "model.layers." + std::to_string(i % 7) + ".t" + std::to_string(i);
    t.dtype = dtypes[rng() % std::size(dtypes)];
    t.shape = {1 + rng() % 9, 1 + rng() % 5};
    std::uint64_t size = t.shape[0] * t.shape[1] * DTypeBits(t.dtype) / 8;
    s.bytes[i].resize(size);
    for (std::byte& b : s.bytes[i]) b = static_cast<std::byte>(rng());
    s.tensors.push_back(std::move(t));
  }
  for (int i = 0; i < n; ++i) s.tensors[i].bytes = s.bytes[i];
  return s;
}

// Every source tensor is in `c` with its dtype, shape and bytes.
void CheckBytes(const Checkpoint& c, const Source& s) {
  REQUIRE(c.tensors().size() == s.tensors.size());
  std::vector<std::string> files;
  for (const ShardInfo& shard : c.shards()) files.push_back(ReadFile(shard.path));
  for (std::size_t i = 0; i < s.tensors.size(); ++i) {
    const TensorData& want = s.tensors[i];
    const TensorInfo* t = c.Find(want.name);
    REQUIRE_MESSAGE(t != nullptr, want.name);
    CHECK(t->dtype == want.dtype);
    CHECK(t->shape == want.shape);
    REQUIRE(t->size == s.bytes[i].size());
    const std::string& file = files[t->shard];
    REQUIRE(t->offset + t->size <= file.size());
    CHECK(file.compare(t->offset, t->size, reinterpret_cast<const char*>(s.bytes[i].data()),
                       t->size) == 0);
  }
}

TEST_CASE("WriteCheckpoint: sharded checkpoint round trip") {
  TempDir dir;
  Source s = MakeSource(60, Seed());
  CheckpointWriteOptions options;
  options.max_shard_size = 300;
  options.shard_metadata = Metadata{{"format", "pt"}};
  REQUIRE(WriteCheckpoint(dir.path(), s.tensors, options).ok());
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->index_path() == dir / "model.safetensors.index.json");
  CHECK(c->shards().size() > 2);
  CHECK(c->warnings().empty());  // total_size matches the tensor bytes
  for (const ShardInfo& shard : c->shards()) {
    CHECK(shard.metadata == Metadata{{"format", "pt"}});
    CHECK(shard.data_offset % 8 == 0);  // the writer pads the header
    CHECK(shard.num_tensors > 0);
  }
  CheckBytes(*c, s);
  // The index path itself, too.
  Result<Checkpoint> via_index = Checkpoint::Open(dir / "model.safetensors.index.json");
  REQUIRE(via_index.has_value());
  CHECK(via_index->tensors().size() == s.tensors.size());
}

TEST_CASE("WriteCheckpoint: one file, and a forced index, with a diffusers prefix") {
  TempDir dir;
  Source s = MakeSource(10, Seed() + 1);
  CheckpointWriteOptions options;
  options.prefix = "diffusion_pytorch_model";
  SUBCASE("single file") {
    REQUIRE(WriteCheckpoint(dir.path(), s.tensors, options).ok());
    Result<Checkpoint> c = Checkpoint::Open(dir.path());
    REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
    CHECK(c->index_path().empty());
    REQUIRE(c->shards().size() == 1);
    CHECK(c->shards()[0].name == "diffusion_pytorch_model.safetensors");
    CheckBytes(*c, s);
  }
  SUBCASE("always_index") {
    options.always_index = true;
    REQUIRE(WriteCheckpoint(dir.path(), s.tensors, options).ok());
    Result<Checkpoint> c = Checkpoint::Open(dir.path());
    REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
    CHECK(c->index_path() == dir / "diffusion_pytorch_model.safetensors.index.json");
    REQUIRE(c->shards().size() == 1);
    CheckBytes(*c, s);
  }
}

TEST_CASE("WriteSafetensors files in one directory, no index") {
  TempDir dir;
  Source s = MakeSource(12, Seed() + 2);
  std::span<const TensorData> all = s.tensors;
  REQUIRE(WriteSafetensors(dir / "b.safetensors", all.subspan(0, 5)).ok());
  REQUIRE(WriteSafetensors(dir / "a.safetensors", all.subspan(5)).ok());
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->shards()[0].name == "a.safetensors");
  CHECK(c->shards()[0].num_tensors == 7);
  CHECK(c->shards()[1].num_tensors == 5);
  CheckBytes(*c, s);
  // The same tensor written into a third file is a duplicate.
  REQUIRE(WriteSafetensors(dir / "c.safetensors", all.subspan(0, 1)).ok());
  ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kDuplicateTensor,
              {dir / "c.safetensors", dir / "b.safetensors", s.tensors[0].name});
}

}  // namespace
}  // namespace shardload::test
