// Checkpoint::Open over every directory layout: single file, index path,
// directory with one/two/no index, diffusers names, a Hugging Face cache
// symlink tree, and the cross-checks between index and shards.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "format/header.h"
#include "index/index_fixtures.h"
#include "shardload/checkpoint.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

std::vector<std::string> TensorNames(const Checkpoint& c) {
  std::vector<std::string> out;
  for (const TensorInfo& t : c.tensors()) out.push_back(t.name);
  return out;
}

// Every tensor of `specs` is in `c`, in the shard of that name, at the
// offset the layout implies and at the header reader's data_offset + begin.
void CheckAgainstSpecs(const Checkpoint& c, const std::vector<ShardSpec>& specs,
                       const std::string& dir) {
  std::size_t count = 0;
  for (const ShardSpec& spec : specs) {
    Result<format::Header> header = format::ReadHeaderFile(dir + "/" + spec.name);
    REQUIRE(header.has_value());
    for (const FakeTensor& ft : spec.tensors) {
      ++count;
      const TensorInfo* t = c.Find(ft.name);
      REQUIRE_MESSAGE(t != nullptr, ft.name);
      REQUIRE(t->shard < c.shards().size());
      const ShardInfo& shard = c.shards()[t->shard];
      CHECK(shard.name == spec.name);
      CHECK(t->shape == ft.shape);
      CHECK(DTypeName(t->dtype) == ft.dtype);
      CHECK(t->size == BytesOf(ft));
      CHECK(t->offset == ExpectedOffset(spec.tensors, ft.name, spec.metadata));
      auto h = std::find_if(header->tensors.begin(), header->tensors.end(),
                            [&](const format::HeaderTensor& x) { return x.name == ft.name; });
      REQUIRE(h != header->tensors.end());
      CHECK(t->offset == 8 + header->header_size + h->begin);
      CHECK(shard.data_offset == 8 + header->header_size);
      CHECK(t->offset + t->size <= shard.file_size);
    }
  }
  CHECK(c.tensors().size() == count);
}

TEST_CASE("single .safetensors file") {
  TempDir dir;
  std::vector<FakeTensor> tensors = {{"b", "F32", {2, 2}}, {"a", "I64", {}}, {"c", "BOOL", {3}}};
  std::string path = dir / "weights.safetensors";
  WriteFile(path, ShardBytes(tensors, R"({"format":"pt"})"));
  Result<Checkpoint> c = Checkpoint::Open(path);
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->path() == path);
  CHECK(c->index_path().empty());
  CHECK(c->index_metadata().empty());
  CHECK(c->warnings().empty());
  REQUIRE(c->shards().size() == 1);
  const ShardInfo& s = c->shards()[0];
  CHECK(s.name == "weights.safetensors");
  CHECK(s.path == path);
  CHECK(s.file_size == ReadFile(path).size());
  CHECK(s.num_tensors == 3);
  REQUIRE(s.metadata.has_value());
  CHECK(*s.metadata == Metadata{{"format", "pt"}});
  CHECK(TensorNames(*c) == std::vector<std::string>{"a", "b", "c"});
  CheckAgainstSpecs(*c, {{"weights.safetensors", tensors, R"({"format":"pt"})"}}, dir.path());
  CHECK(c->Find("a")->NumElements() == 1);
  CHECK(c->Find("b")->NumElements() == 4);
  CHECK(c->TotalBytes() == 8 + 16 + 3);
}

TEST_CASE("index path, directory with one index, and the index's metadata") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  std::string index_path = WriteSharded(dir.path(), specs);
  // A stray consolidated file beside the index is not part of the checkpoint.
  WriteFile(dir / "consolidated.safetensors", ShardBytes({{"lm_head.weight"}}));
  WriteFile(dir / "config.json", "{}");
  for (const std::string& path : {index_path, dir.path(), dir.path() + "/"}) {
    CAPTURE(path);
    Result<Checkpoint> c = Checkpoint::Open(path);
    REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
    CHECK(c->path() == path);
    CHECK(c->index_path().ends_with("/model.safetensors.index.json"));
    CHECK(c->warnings().empty());  // total_size matches
    REQUIRE(c->shards().size() == 2);
    CHECK(c->shards()[0].name == "model-00001-of-00002.safetensors");
    CHECK(c->shards()[1].name == "model-00002-of-00002.safetensors");
    CHECK(c->shards()[0].num_tensors == 3);
    CHECK(c->shards()[1].num_tensors == 2);
    CHECK(c->shards()[0].path == dir / "model-00001-of-00002.safetensors");
    CHECK(c->shards()[1].metadata == Metadata{{"format", "pt"}});
    CHECK(TensorNames(*c) == std::vector<std::string>{"lm_head.weight", "model.embed.weight",
                                                      "model.layers.0.b", "model.layers.0.w",
                                                      "model.norm.weight"});
    CheckAgainstSpecs(*c, specs, dir.path());
    CHECK(c->index_metadata() == Metadata{{"total_size", std::to_string(c->TotalBytes())}});
  }
}

TEST_CASE("directory with two indexes is ambiguous") {
  TempDir dir;
  WriteSharded(dir.path(), TwoShards());
  WriteFile(dir / "model.fp16.safetensors.index.json",
            ReadFile(dir / "model.safetensors.index.json"));
  Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kAmbiguousIndex,
                        {dir.path(), "model.safetensors.index.json",
                         "model.fp16.safetensors.index.json", "pass the path"});
  CHECK(e.path == dir.path());
  // Naming one of them works.
  CHECK(Checkpoint::Open(dir / "model.fp16.safetensors.index.json").has_value());
}

TEST_CASE("directory of .safetensors files without an index: all, sorted by name") {
  TempDir dir;
  std::vector<ShardSpec> specs = {
      {"z.safetensors", {{"z1"}, {"a_from_z", "U8", {1}}}},
      {"a.safetensors", {{"m1", "F64", {1}}}},
      {"m.safetensors", {}},  // no tensors at all: still a shard
  };
  for (const ShardSpec& s : specs) WriteFile(dir / s.name, ShardBytes(s.tensors, s.metadata));
  WriteFile(dir / "README.md", "not a checkpoint");
  WriteFile(dir / "sub/deeper.safetensors", ShardBytes({{"deep"}}));  // not recursive
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->index_path().empty());
  REQUIRE(c->shards().size() == 3);
  CHECK(c->shards()[0].name == "a.safetensors");
  CHECK(c->shards()[1].name == "m.safetensors");
  CHECK(c->shards()[2].name == "z.safetensors");
  CHECK(c->shards()[1].num_tensors == 0);
  CHECK(c->shards()[2].num_tensors == 2);
  CHECK(TensorNames(*c) == std::vector<std::string>{"a_from_z", "m1", "z1"});
  CheckAgainstSpecs(*c, specs, dir.path());
  CHECK(c->Find("deep") == nullptr);
}

TEST_CASE("diffusers-named index in a component folder") {
  TempDir dir;
  std::string unet = dir / "unet";
  std::vector<ShardSpec> specs = TwoShards("diffusion_pytorch_model");
  WriteSharded(unet, specs, "diffusion_pytorch_model.safetensors.index.json");
  Result<Checkpoint> c = Checkpoint::Open(unet);
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->index_path() == unet + "/diffusion_pytorch_model.safetensors.index.json");
  CHECK(c->shards()[0].name == "diffusion_pytorch_model-00001-of-00002.safetensors");
  CheckAgainstSpecs(*c, specs, unet);
  // The pipeline root holds no checkpoint of its own.
  ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNoCheckpoint, {dir.path()});
}

TEST_CASE("a regular file is a safetensors file whatever its name") {
  TempDir dir;
  std::vector<FakeTensor> tensors = {{"w", "F16", {3, 2}}, {"b", "U8", {5}}};
  std::string bytes = ShardBytes(tensors, "");
  std::filesystem::create_directories(dir / "blobs");
  // model.st, a Hugging Face blob (named by its hash, no extension) opened
  // directly and through a snapshot symlink with no extension either.
  std::string blob = dir / "blobs/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  WriteFile(dir / "model.st", bytes);
  WriteFile(blob, bytes);
  MakeSymlink(blob, dir / "weights");
  for (const std::string& path : {dir / "model.st", blob, dir / "weights"}) {
    CAPTURE(path);
    Result<Checkpoint> c = Checkpoint::Open(path);
    REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
    REQUIRE(c->shards().size() == 1);
    CHECK(c->shards()[0].path == path);
    CHECK(c->shards()[0].name == path.substr(path.rfind('/') + 1));
    CHECK(TensorNames(*c) == std::vector<std::string>{"b", "w"});
    CheckAgainstSpecs(*c, {{c->shards()[0].name, tensors, ""}},
                      std::filesystem::path(path).parent_path().string());
  }
  // Listing a directory still takes only *.safetensors: model.st is ignored.
  ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNoCheckpoint, {dir.path()});
}

TEST_CASE("Hugging Face cache: snapshot of relative symlinks into blobs") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  // Build the checkpoint elsewhere, then move each file to blobs/<sha>.
  std::string src = dir / "src";
  WriteSharded(src, specs);
  std::string snapshot = dir / "models--org--m/snapshots/0123abcd";
  std::vector<std::string> names = {"model.safetensors.index.json", specs[0].name, specs[1].name};
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::string blob = "blob" + std::to_string(i) + "deadbeef";
    std::filesystem::create_directories(dir / "models--org--m/blobs");
    std::filesystem::rename(src + "/" + names[i], dir / ("models--org--m/blobs/" + blob));
    MakeSymlink("../../blobs/" + blob, snapshot + "/" + names[i]);
  }
  for (const std::string& path : {snapshot, snapshot + "/model.safetensors.index.json"}) {
    CAPTURE(path);
    Result<Checkpoint> c = Checkpoint::Open(path);
    REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
    CHECK(c->index_path() == snapshot + "/model.safetensors.index.json");
    CHECK(c->shards()[0].path == snapshot + "/" + specs[1].name);
    CHECK(c->warnings().empty());
    CheckAgainstSpecs(*c, specs, snapshot);
  }
}

TEST_CASE("shard symlinked to a directory or to /dev/null is refused") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  WriteSharded(dir.path(), specs);
  std::string shard = dir / specs[1].name;  // model-00001-of-00002
  std::filesystem::remove(shard);
  SUBCASE("directory") {
    std::filesystem::create_directories(dir / "somedir");
    MakeSymlink("somedir", shard);
    Error e =
        ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile,
                    {shard, "directory", "model.safetensors.index.json", "model.embed.weight"});
    CHECK(e.path == shard);
    CHECK(e.tensor == "model.embed.weight");  // smallest name mapped to it
  }
  SUBCASE("character device") {
    MakeSymlink("/dev/null", shard);
    ExpectError(Checkpoint::Open(dir / "model.safetensors.index.json"), ErrorCode::kNotRegularFile,
                {shard, "character device", "model.safetensors.index.json", "model.embed.weight"});
  }
  SUBCASE("without an index too") {
    std::filesystem::remove(dir / "model.safetensors.index.json");
    MakeSymlink("/dev/null", shard);
    ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNotRegularFile, {shard});
  }
}

TEST_CASE("shard names must stay inside the checkpoint directory") {
  const std::vector<std::string> bad = {
      "../x.safetensors",
      "/abs/x.safetensors",
      "",
      "C:\\x.safetensors",
      "..\\x.safetensors",
      "sub\\x.safetensors",
      "C:x.safetensors",
      "c:/x.safetensors",
      "sub/../../x.safetensors",
      "sub/../x.safetensors",
      "./x.safetensors",
      "sub//x.safetensors",
      "x.bin",
      "x.safetensors/",
      "x.safetensors.json",
      std::string("x\0.safetensors", 14),
      "..",
  };
  for (const std::string& name : bad) {
    CAPTURE(name);
    TempDir dir;
    WriteFile(dir / "ok.safetensors", ShardBytes({{"good"}}));
    WriteFile(dir / "model.safetensors.index.json",
              IndexJson({{"good", "ok.safetensors"}, {"evil", name}, {"b_evil", name}}, {}));
    Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kBadShardName,
                          {"model.safetensors.index.json", "b_evil"});
    CHECK(e.path == dir / "model.safetensors.index.json");
    CHECK(e.tensor == "b_evil");
    if (name.find('\0') == std::string::npos)
      CHECK(e.detail.find("\"" + name + "\"") != std::string::npos);
  }
}

TEST_CASE("shards in a subdirectory are fine") {
  TempDir dir;
  std::vector<ShardSpec> specs = {{"sub/part-1.safetensors", {{"x"}}},
                                  {"sub/deeper/part-2.safetensors", {{"y"}}}};
  WriteSharded(dir.path(), specs);
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->shards()[0].name == "sub/deeper/part-2.safetensors");
  CHECK(c->shards()[0].path == dir / "sub/deeper/part-2.safetensors");
  CheckAgainstSpecs(*c, specs, dir.path());
}

TEST_CASE("missing shards") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  specs.push_back({"model-extra.safetensors", {{"zz"}}});
  std::string index_path = WriteSharded(dir.path(), specs);
  std::string shard1 = dir / "model-00001-of-00002.safetensors";
  SUBCASE("one") {
    std::filesystem::remove(shard1);
    Error e = ExpectError(Checkpoint::Open(index_path), ErrorCode::kShardMissing,
                          {shard1, index_path, "model.embed.weight", "3 tensor(s)"});
    CHECK(e.path == shard1);
    CHECK(e.tensor == "model.embed.weight");
  }
  SUBCASE("several: the first is named, the others counted") {
    std::filesystem::remove(shard1);
    std::filesystem::remove(dir / "model-extra.safetensors");
    ExpectError(Checkpoint::Open(index_path), ErrorCode::kShardMissing,
                {shard1, index_path, "1 more shard(s) missing: model-extra.safetensors"});
  }
  SUBCASE("dangling symlink (cache blob not downloaded)") {
    std::filesystem::remove(shard1);
    MakeSymlink("../blobs/nothere", shard1);
    ExpectError(Checkpoint::Open(index_path), ErrorCode::kShardMissing,
                {shard1, "dangling symlink", "model.embed.weight"});
  }
}

TEST_CASE("a weight_map tensor absent from its shard") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  WriteSharded(dir.path(), specs);
  // Rewrite shard 2 without model.norm.weight; the index still maps it there.
  std::string shard2 = dir / "model-00002-of-00002.safetensors";
  WriteFile(shard2, ShardBytes({{"lm_head.weight", "BF16", {4, 2}}}));
  Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kTensorNotInShard,
                        {shard2, "model.norm.weight", "model.safetensors.index.json",
                         "model-00002-of-00002.safetensors"});
  CHECK(e.path == shard2);
  CHECK(e.tensor == "model.norm.weight");
}

TEST_CASE("tensors in a shard but not indexed: warning, not loaded") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  std::string index_path = WriteSharded(dir.path(), specs);
  // Shard 1 gains an unindexed tensor and a copy of a tensor indexed in shard 2.
  std::vector<FakeTensor> with_extra = specs[1].tensors;
  with_extra.push_back({"extra.bias", "F32", {7}});
  with_extra.push_back({"lm_head.weight", "BF16", {4, 2}});
  std::string shard1 = dir / "model-00001-of-00002.safetensors";
  WriteFile(shard1, ShardBytes(with_extra));
  Result<Checkpoint> c = Checkpoint::Open(index_path);
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->Find("extra.bias") == nullptr);
  CHECK(c->tensors().size() == 5);
  CHECK(c->shards()[0].num_tensors == 3);
  CHECK(c->shards()[c->Find("lm_head.weight")->shard].name == "model-00002-of-00002.safetensors");
  REQUIRE(c->warnings().size() == 2);  // total_size still matches
  for (const Warning& w : c->warnings()) {
    CHECK(w.code == ErrorCode::kUnindexedTensor);
    CHECK(w.path == shard1);
    CHECK(w.detail.find(index_path) != std::string::npos);
  }
  std::vector<std::string> warned = {c->warnings()[0].tensor, c->warnings()[1].tensor};
  std::sort(warned.begin(), warned.end());
  CHECK(warned == std::vector<std::string>{"extra.bias", "lm_head.weight"});
}

TEST_CASE("many unindexed tensors: warnings are capped and counted") {
  TempDir dir;
  std::vector<FakeTensor> tensors = {{"kept"}};
  for (int i = 0; i < 100; ++i) tensors.push_back({"junk." + std::to_string(i), "U8", {1}});
  WriteFile(dir / "a.safetensors", ShardBytes(tensors));
  WriteFile(dir / "model.safetensors.index.json", IndexJson({{"kept", "a.safetensors"}}, 8));
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  REQUIRE(c->warnings().size() == 65);
  CHECK(c->warnings().back().detail.find("36 more") != std::string::npos);
}

TEST_CASE("metadata.total_size is advisory") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  for (const ShardSpec& s : specs) WriteFile(dir / s.name, ShardBytes(s.tensors));
  std::vector<std::pair<std::string, std::string>> map;
  std::uint64_t bytes = 0;
  for (const ShardSpec& s : specs) {
    for (const FakeTensor& t : s.tensors) {
      map.emplace_back(t.name, s.name);
      bytes += BytesOf(t);
    }
  }
  std::string index_path = dir / "model.safetensors.index.json";
  SUBCASE("match") {
    WriteFile(index_path, IndexJson(map, bytes));
    Result<Checkpoint> c = Checkpoint::Open(index_path);
    REQUIRE(c.has_value());
    CHECK(c->warnings().empty());
    CHECK(c->TotalBytes() == bytes);
  }
  SUBCASE("mismatch (e.g. mlx-lm counted file sizes)") {
    WriteFile(index_path, IndexJson(map, bytes + 123));
    Result<Checkpoint> c = Checkpoint::Open(index_path);
    REQUIRE(c.has_value());
    REQUIRE(c->warnings().size() == 1);
    const Warning& w = c->warnings()[0];
    CHECK(w.code == ErrorCode::kTotalSizeMismatch);
    CHECK(w.path == index_path);
    CHECK(w.detail.find(std::to_string(bytes + 123)) != std::string::npos);
    CHECK(w.detail.find(std::to_string(bytes)) != std::string::npos);
  }
  SUBCASE("absent (mflux)") {
    WriteFile(index_path, IndexJson(map, std::nullopt));
    Result<Checkpoint> c = Checkpoint::Open(index_path);
    REQUIRE(c.has_value());
    CHECK(c->warnings().empty());
    CHECK(c->index_metadata().empty());
  }
}

TEST_CASE("extra index metadata keys are preserved") {
  TempDir dir;
  WriteFile(dir / "a.safetensors", ShardBytes({{"w"}}));
  WriteFile(dir / "model.safetensors.index.json",
            IndexJson({{"w", "a.safetensors"}}, 8,
                      R"("total_parameters": 2, "format": "pt", "nested": {"a": [1, 2.5, null]},)"
                      R"( "flag": true, "note": "caf\u00e9 \"q\"")"));
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->index_metadata() == Metadata{{"total_size", "8"},
                                        {"total_parameters", "2"},
                                        {"format", "pt"},
                                        {"nested", R"({"a":[1,2.5,null]})"},
                                        {"flag", "true"},
                                        {"note", "caf\xc3\xa9 \"q\""}});
}

TEST_CASE("the same tensor in two files without an index") {
  TempDir dir;
  WriteFile(dir / "a.safetensors", ShardBytes({{"x"}, {"shared"}}));
  WriteFile(dir / "b.safetensors", ShardBytes({{"shared"}, {"y"}}));
  Error e = ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kDuplicateTensor,
                        {dir / "a.safetensors", dir / "b.safetensors", "shared"});
  CHECK(e.path == dir / "b.safetensors");
  CHECK(e.tensor == "shared");
}

TEST_CASE("Find by binary search") {
  TempDir dir;
  std::vector<FakeTensor> tensors;
  for (const char* n : {"layer.1", "layer.10", "layer.2", "", "layer", "layer.1.x", "\xc3\xa9"}) {
    tensors.push_back({n, "U8", {1}});
  }
  WriteFile(dir / "m.safetensors", ShardBytes(tensors));
  Result<Checkpoint> c = Checkpoint::Open(dir / "m.safetensors");
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(std::is_sorted(c->tensors().begin(), c->tensors().end(),
                       [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; }));
  for (const FakeTensor& t : tensors) {
    const TensorInfo* found = c->Find(t.name);
    REQUIRE(found != nullptr);
    CHECK(found->name == t.name);
    CHECK(found->offset == ExpectedOffset(tensors, t.name));
  }
  for (const char* n : {"layer.", "layer.3", "a", "zzz", "layer.1.", "\xc3"}) {
    CHECK(c->Find(n) == nullptr);
  }
}

TEST_CASE("an empty weight_map is a checkpoint with no tensors") {
  TempDir dir;
  WriteFile(dir / "stray.safetensors", ShardBytes({{"w"}}));
  WriteFile(dir / "model.safetensors.index.json",
            R"({"metadata": {"total_size": 0}, "weight_map": {}})");
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->shards().empty());
  CHECK(c->tensors().empty());
  CHECK(c->warnings().empty());
  CHECK(c->TotalBytes() == 0);
}

TEST_CASE("shard header errors are propagated") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  std::string index_path = WriteSharded(dir.path(), specs);
  std::string shard2 = dir / "model-00002-of-00002.safetensors";
  std::string good = ReadFile(shard2);
  SUBCASE("truncated") {
    WriteFile(shard2, good.substr(0, good.size() - 3));
    Error e = ExpectError(Checkpoint::Open(index_path), ErrorCode::kIncompleteBuffer, {shard2});
    CHECK(e.path == shard2);
  }
  SUBCASE("empty file") {
    WriteFile(shard2, "");
    ExpectError(Checkpoint::Open(index_path), ErrorCode::kHeaderTooSmall, {shard2});
  }
  SUBCASE("unknown dtype") {
    WriteFile(
        shard2,
        RawSafetensors(R"({"lm_head.weight":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})",
                       std::string(16, 'x')));
    ExpectError(Checkpoint::Open(index_path), ErrorCode::kUnknownDtype, {shard2});
  }
  SUBCASE("single file, empty") {
    WriteFile(dir / "solo.safetensors", "");
    ExpectError(Checkpoint::Open(dir / "solo.safetensors"), ErrorCode::kHeaderTooSmall,
                {dir / "solo.safetensors"});
  }
}

TEST_CASE("paths that name no checkpoint") {
  TempDir dir;
  SUBCASE("missing path: kIoError with ENOENT") {
    Error e = ExpectError(Checkpoint::Open(dir / "nope"), ErrorCode::kIoError, {dir / "nope"});
    CHECK(e.sys_errno == ENOENT);
    CHECK(e.path == dir / "nope");
  }
  SUBCASE("empty directory") {
    ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNoCheckpoint, {dir.path()});
  }
  SUBCASE("a file of another kind is read as safetensors, and refused as such") {
    WriteFile(dir / "pytorch_model.bin.index.json", "{}");
    WriteFile(dir / "model.bin", "x");
    ExpectError(Checkpoint::Open(dir / "pytorch_model.bin.index.json"),
                ErrorCode::kHeaderTooSmall, {dir / "pytorch_model.bin.index.json"});
    ExpectError(Checkpoint::Open(dir / "model.bin"), ErrorCode::kHeaderTooSmall,
                {dir / "model.bin"});
    // When listing a directory, only the suffixes count.
    ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kNoCheckpoint, {dir.path()});
  }
  SUBCASE("a device") {
    ExpectError(Checkpoint::Open("/dev/null"), ErrorCode::kNotRegularFile, {"/dev/null"});
  }
  SUBCASE("empty path") { ExpectError(Checkpoint::Open(""), ErrorCode::kInvalidArgument, {}); }
  SUBCASE("an index that is broken JSON") {
    WriteFile(dir / "model.safetensors.index.json", "{\"weight_map\": {\n  \"a\": 1,}");
    ExpectError(Checkpoint::Open(dir.path()), ErrorCode::kIndexJson,
                {dir / "model.safetensors.index.json"});
  }
}

TEST_CASE("relative paths stay relative") {
  TempDir dir;
  std::vector<ShardSpec> specs = TwoShards();
  WriteSharded(dir.path(), specs);
  std::string cwd = std::filesystem::current_path().string();
  REQUIRE(::chdir(dir.path().c_str()) == 0);
  Result<Checkpoint> c = Checkpoint::Open("model.safetensors.index.json");
  Result<Checkpoint> d = Checkpoint::Open(".");
  REQUIRE(::chdir(cwd.c_str()) == 0);
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->shards()[0].path == "model-00001-of-00002.safetensors");
  REQUIRE_MESSAGE(d.has_value(), shardload::test::ErrorText(d));
  CHECK(d->shards()[0].path == "./model-00001-of-00002.safetensors");
}

TEST_CASE("an index of tens of thousands of tensors") {
  TempDir dir;
  constexpr int kShards = 8;
  constexpr int kPerShard = 4000;
  std::vector<std::pair<std::string, std::string>> map;
  for (int s = 0; s < kShards; ++s) {
    std::vector<FakeTensor> tensors;
    std::string shard = "model-0000" + std::to_string(s + 1) + "-of-00008.safetensors";
    for (int i = 0; i < kPerShard; ++i) {
      tensors.push_back({"model.layers." + std::to_string(i % 97) + ".experts." +
                             std::to_string(s * kPerShard + i) + ".w",
                         "BF16",
                         {2}});
      map.emplace_back(tensors.back().name, shard);
    }
    WriteFile(dir / shard, ShardBytes(tensors));
  }
  std::reverse(map.begin(), map.end());
  WriteFile(dir / "model.safetensors.index.json", IndexJson(map, 4ull * kShards * kPerShard));
  Result<Checkpoint> c = Checkpoint::Open(dir.path());
  REQUIRE_MESSAGE(c.has_value(), shardload::test::ErrorText(c));
  CHECK(c->tensors().size() == kShards * kPerShard);
  CHECK(c->warnings().empty());
  for (const ShardInfo& s : c->shards()) CHECK(s.num_tensors == kPerShard);
}

}  // namespace
}  // namespace shardload::test
