// Hostile checkpoints that resolver_test.cpp and index_json_test.cpp do not
// already cover (issue #5): a plain directory, a FIFO or a symlink loop where
// a shard or the index should be, index JSON of the wrong types opened
// through Checkpoint::Open, and a shard cut at each point of its layout. Each
// must fail with its documented code (docs/errors.md), naming the file, and
// the tensor where one is involved; none may hang.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "index/index_fixtures.h"
#include "shardload/checkpoint.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

// TwoShards() written under `dir` with its index; returns the index path.
std::string WriteTwoShards(const TempDir& dir) { return WriteSharded(dir.path(), TwoShards()); }

// The shard of TwoShards() listed second: "model-00001-of-00002.safetensors",
// whose smallest tensor name is "model.embed.weight".
std::string Shard1(const TempDir& dir) { return dir / "model-00001-of-00002.safetensors"; }
constexpr const char* kShard1Tensor = "model.embed.weight";

void MakeFifo(const std::string& path) { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }

TEST_CASE("a plain directory where an indexed shard should be") {
  TempDir dir;
  std::string index = WriteTwoShards(dir);
  std::filesystem::remove(Shard1(dir));
  std::filesystem::create_directory(Shard1(dir));
  Error e = ExpectError(Checkpoint::Open(index), ErrorCode::kNotRegularFile,
                        {Shard1(dir), "a directory", index});
  CHECK(e.path == Shard1(dir));
  CHECK(e.tensor == kShard1Tensor);
}

TEST_CASE("a directory named *.safetensors in a directory without an index") {
  TempDir dir;
  WriteFile(dir / "a.safetensors", ShardBytes({{"x"}}));
  std::filesystem::create_directory(dir / "b.safetensors");
  Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                        {dir / "b.safetensors", "a directory"});
  CHECK(e.path == dir / "b.safetensors");
}

TEST_CASE("a FIFO where a shard or the index should be: refused without blocking") {
  TempDir dir;
  SUBCASE("indexed shard") {
    std::string index = WriteTwoShards(dir);
    std::filesystem::remove(Shard1(dir));
    MakeFifo(Shard1(dir));
    Error e = ExpectError(Checkpoint::Open(index), ErrorCode::kNotRegularFile,
                          {Shard1(dir), "a FIFO", index});
    CHECK(e.path == Shard1(dir));
    CHECK(e.tensor == kShard1Tensor);
  }
  SUBCASE("shard of a directory without an index") {
    WriteFile(dir / "a.safetensors", ShardBytes({{"x"}}));
    MakeFifo(dir / "b.safetensors");
    Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                          {dir / "b.safetensors", "a FIFO"});
    CHECK(e.path == dir / "b.safetensors");
  }
  SUBCASE("the index") {
    WriteFile(dir / "a.safetensors", ShardBytes({{"x"}}));
    MakeFifo(dir / "model.safetensors.index.json");
    Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                          {dir / "model.safetensors.index.json"});
    CHECK(e.path == dir / "model.safetensors.index.json");
  }
  SUBCASE("a single file given by path") {
    MakeFifo(dir / "solo.safetensors");
    ExpectError(Checkpoint::Open(dir / "solo.safetensors"), ErrorCode::kNotRegularFile,
                {dir / "solo.safetensors"});
  }
}

TEST_CASE("the index is a directory or /dev/null") {
  TempDir dir;
  WriteFile(dir / "a.safetensors", ShardBytes({{"x"}}));
  SUBCASE("directory") {
    std::filesystem::create_directory(dir / "model.safetensors.index.json");
    Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                          {dir / "model.safetensors.index.json"});
    CHECK(e.path == dir / "model.safetensors.index.json");
  }
  SUBCASE("symlink to /dev/null") {
    MakeSymlink("/dev/null", dir / "model.safetensors.index.json");
    Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                          {dir / "model.safetensors.index.json"});
    CHECK(e.path == dir / "model.safetensors.index.json");
  }
}

TEST_CASE("a shard that is a symlink loop: kIoError (ELOOP) naming shard and tensor") {
  TempDir dir;
  std::string index = WriteTwoShards(dir);
  std::filesystem::remove(Shard1(dir));
  MakeSymlink("model-00001-of-00002.safetensors", Shard1(dir));  // points at itself
  Error e = ExpectError(Checkpoint::Open(index), ErrorCode::kIoError, {Shard1(dir)});
  CHECK(e.sys_errno == ELOOP);
  CHECK(e.path == Shard1(dir));
  CHECK(e.tensor == kShard1Tensor);
}

TEST_CASE("index JSON of the wrong types, through Checkpoint::Open") {
  struct Row {
    const char* json;
    const char* tensor;   // the tensor the error must name, or ""
    const char* mention;  // what the message must say
  };
  const Row rows[] = {
      {R"({"weight_map": {"w": 7}})", "w", "a number"},
      {R"({"weight_map": {"w": null}})", "w", "null"},
      {R"({"weight_map": {"w": {"file": "a.safetensors"}}})", "w", "weight_map value"},
      {R"({"weight_map": {"w": ["a.safetensors"]}})", "w", "weight_map value"},
      {R"({"weight_map": ["a.safetensors"]})", "", "an array"},
      {R"({"weight_map": "a.safetensors"})", "", "weight_map"},
      {R"({"weight_map": true})", "", "weight_map"},
      {R"({"metadata": "x", "weight_map": {"w": "a.safetensors"}})", "", "\"metadata\""},
      {R"({"metadata": {"total_size": "8"}, "weight_map": {"w": "a.safetensors"}})", "",
       "metadata.total_size"},
      {R"({"metadata": {"total_size": -8}, "weight_map": {"w": "a.safetensors"}})", "",
       "metadata.total_size"},
      {R"("weight_map")", "", "must be a JSON object"},
      {"", "", "invalid JSON"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.json);
    TempDir dir;
    WriteFile(dir / "a.safetensors", ShardBytes({{"w"}}));
    std::string index = dir / "model.safetensors.index.json";
    WriteFile(index, row.json);
    Error e =
        ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kIndexJson, {index, row.mention});
    CHECK(e.path == index);
    CHECK(e.tensor == row.tensor);
  }
}

TEST_CASE("an indexed shard cut at each point of its layout") {
  TempDir dir;
  std::string index = WriteTwoShards(dir);
  const std::string good = ReadFile(Shard1(dir));
  const std::uint64_t n = static_cast<unsigned char>(good[0]) |
                          (static_cast<std::uint64_t>(static_cast<unsigned char>(good[1])) << 8);
  struct Cut {
    std::size_t keep;
    ErrorCode code;
    const char* mention;
  };
  const Cut cuts[] = {
      {0, ErrorCode::kHeaderTooSmall, "fewer than the 8-byte header length prefix"},
      {5, ErrorCode::kHeaderTooSmall, "fewer than the 8-byte header length prefix"},
      {8, ErrorCode::kInvalidHeaderLength, "runs past the end of the file"},
      {8 + n / 2, ErrorCode::kInvalidHeaderLength, "runs past the end of the file"},
      {8 + n, ErrorCode::kIncompleteBuffer, "bytes short"},
      {good.size() - 1, ErrorCode::kIncompleteBuffer, "1 bytes short"},
  };
  for (const Cut& cut : cuts) {
    CAPTURE(cut.keep);
    WriteFile(Shard1(dir), good.substr(0, cut.keep));
    Error e = ExpectError(Checkpoint::Open(index), cut.code, {Shard1(dir), cut.mention});
    CHECK(e.path == Shard1(dir));
  }
  WriteFile(Shard1(dir), good);
  CHECK(Checkpoint::Open(index).has_value());
}

}  // namespace
}  // namespace shardload::test
