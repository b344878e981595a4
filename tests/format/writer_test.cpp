// Tests of the safetensors writer: exact bytes on small known cases, round
// trips of all 22 dtypes through the reader, byte-identical rewrites of the
// reference-written real files, sharded checkpoints, errors and atomicity.
// Single-threaded.
#include "shardload/writer.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "format/header.h"
#include "support/test_util.h"

namespace shardload {
namespace {

using test::ReadFile;
using test::TempDir;

std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TensorData Tensor(std::string name, DType dtype, std::vector<std::uint64_t> shape,
                  std::string_view bytes) {
  TensorData t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes = AsBytes(bytes);
  return t;
}

// The 8-byte little-endian length followed by `json` (already padded).
std::string Framed(std::string_view json, std::string_view data = {}) {
  REQUIRE(json.size() % 8 == 0);
  return test::RawSafetensors(json, data);
}

// Plain pread of [offset, offset + size) of `path`.
std::string Pread(const std::string& path, std::uint64_t offset, std::uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  std::string out(size, '\0');
  std::uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (done != size) throw std::runtime_error("short read of " + path);
  return out;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// The tensor as the reader sees it in a written file.
struct ReadTensor {
  std::string name;
  DType dtype;
  std::vector<std::uint64_t> shape;
  std::string bytes;
  bool operator==(const ReadTensor&) const = default;
};

// Parses `path` with the reader and preads every tensor's bytes.
std::vector<ReadTensor> ReadBack(const std::string& path, format::Header* header_out = nullptr) {
  Result<format::Header> header = format::ReadHeaderFile(path);
  REQUIRE_MESSAGE(header.has_value(), shardload::test::ErrorText(header));
  std::vector<ReadTensor> out;
  for (const format::HeaderTensor& t : header->tensors) {
    out.push_back({t.name, t.dtype, t.shape,
                   Pread(path, 8 + header->header_size + t.begin, t.end - t.begin)});
  }
  if (header_out != nullptr) *header_out = *header;
  return out;
}

// ---------------------------------------------------------------------------
// Exact layout on small known cases.

TEST_CASE("layout: no tensors, with and without metadata") {
  TempDir dir;
  std::string path = dir / "x.safetensors";
  REQUIRE(WriteSafetensors(path, {}).ok());
  CHECK(ReadFile(path) == Framed("{}      "));
  // Not the reference's invalid `{},"__metadata__":{}}`.
  REQUIRE(WriteSafetensors(path, {}, Metadata{}).ok());
  CHECK(ReadFile(path) == Framed("{\"__metadata__\":{}}     "));
  REQUIRE(WriteSafetensors(path, {}, Metadata{{"format", "pt"}}).ok());
  CHECK(ReadFile(path) == Framed("{\"__metadata__\":{\"format\":\"pt\"}}"));
  CHECK(ReadBack(path).empty());
}

TEST_CASE("layout: dtype descending, then name by UTF-8 bytes; contiguous offsets") {
  TempDir dir;
  std::string path = dir / "order.safetensors";
  const std::string i64(8, '\x11'), f32("\x21\x22\x23\x24", 4), bf16("\x31\x32", 2);
  const std::string ua("A"), ub("BC"), ue("E"), uz("Z"), b1("\x01", 1);
  std::vector<TensorData> tensors = {
      Tensor("z", DType::kU8, {1}, uz),     Tensor("\xc3\xa9", DType::kU8, {1}, ue),
      Tensor("b", DType::kU8, {2}, ub),     Tensor("flag", DType::kBool, {}, b1),
      Tensor("B", DType::kU8, {1, 1}, ua),  Tensor("w", DType::kF32, {1}, f32),
      Tensor("h", DType::kBF16, {1}, bf16), Tensor("i", DType::kI64, {}, i64),
  };
  REQUIRE(WriteSafetensors(path, tensors, Metadata{{"k", "v"}}).ok());
  std::string json =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
      "\"h\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[12,14]},"
      "\"B\":{\"dtype\":\"U8\",\"shape\":[1,1],\"data_offsets\":[14,15]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[15,17]},"
      "\"z\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[17,18]},"
      "\"\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18,19]},"
      "\"flag\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[19,20]}}";
  REQUIRE(json.size() == 465);
  json += "       ";  // 465 -> 472
  CHECK(ReadFile(path) == Framed(json, i64 + f32 + bf16 + ua + ub + uz + ue + b1));
}

TEST_CASE("layout: serde_json string escaping in names and metadata") {
  TempDir dir;
  std::string path = dir / "esc.safetensors";
  const std::string one("\x07");
  std::vector<TensorData> tensors = {
      Tensor("q\"uote", DType::kU8, {0}, ""),
      Tensor("back\\slash", DType::kU8, {0}, ""),
      Tensor(std::string("c\x01\x1f\b\f\n\r\t\0", 9), DType::kU8, {0}, ""),
      Tensor("s/l\x7f", DType::kU8, {0}, ""),
      Tensor("\xe2\x82\xac\xf0\x9f\x98\x80", DType::kU8, {1}, one),
  };
  REQUIRE(WriteSafetensors(path, tensors, Metadata{{"k\"\\", "v\n\x1b/"}}).ok());
  std::string json =
      "{\"__metadata__\":{\"k\\\"\\\\\":\"v\\n\\u001b/\"},"
      "\"back\\\\slash\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"c\\u0001\\u001f\\b\\f\\n\\r\\t\\u0000\":{\"dtype\":\"U8\",\"shape\":[0],"
      "\"data_offsets\":[0,0]},"
      "\"q\\\"uote\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"s/l\x7f\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"\xe2\x82\xac\xf0\x9f\x98\x80\":{\"dtype\":\"U8\",\"shape\":[1],"
      "\"data_offsets\":[0,1]}}";
  REQUIRE(json.size() == 352);  // a multiple of 8: no padding
  CHECK(ReadFile(path) == Framed(json, one));
  std::vector<ReadTensor> back = ReadBack(path);
  REQUIRE(back.size() == tensors.size());
  CHECK(back[1].name == tensors[2].name);  // control characters and NUL decode back
}

TEST_CASE("layout: header padded with spaces to a multiple of 8, N counts the padding") {
  TempDir dir;
  for (std::size_t len = 1; len <= 16; ++len) {
    CAPTURE(len);
    std::string path = dir / "pad.safetensors";
    std::string name(len, 'n');
    const std::string data = "xyz";
    REQUIRE(WriteSafetensors(path, std::vector{Tensor(name, DType::kU8, {3}, data)}).ok());
    std::string json = "{\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    json.append((8 - json.size() % 8) % 8, ' ');
    CHECK(ReadFile(path) == Framed(json, data));
  }
}

// ---------------------------------------------------------------------------
// Round trips through the reader.

std::vector<std::uint64_t> RandomShape(std::mt19937_64& rng, DType dtype) {
  std::vector<std::uint64_t> shape(rng() % 4);
  for (auto& d : shape) d = rng() % 6;
  if (rng() % 8 == 0 && !shape.empty()) shape[rng() % shape.size()] = 0;
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  unsigned bits = DTypeBits(dtype);
  if (bits == 4 && n % 2 != 0) shape.push_back(2);
  if (bits == 6 && n % 4 != 0) shape.push_back(4);
  return shape;
}

std::uint64_t ByteSize(DType dtype, const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n * DTypeBits(dtype) / 8;
}

// Deterministic generated data: byte i of tensor `salt`.
std::byte GeneratedByte(std::uint64_t salt, std::uint64_t i) {
  return static_cast<std::byte>((i * 131 + salt * 7 + (i >> 8)) & 0xFF);
}

TEST_CASE("round trip: all 22 dtypes, scalars, zero-size and sub-byte shapes") {
  std::mt19937_64 rng(test::Seed());
  TempDir dir;
  std::string path = dir / "rt.safetensors";
  for (int round = 0; round < 40; ++round) {
    CAPTURE(round);
    std::size_t count = round == 0 ? kNumDTypes : rng() % 12;
    std::vector<std::string> storage(count);
    std::vector<TensorData> tensors(count);
    std::vector<ReadTensor> expected;
    for (std::size_t i = 0; i < count; ++i) {
      TensorData& t = tensors[i];
      t.dtype = static_cast<DType>(round == 0 ? i : rng() % kNumDTypes);
      t.shape = round == 0 && i % 3 == 0 && DTypeBits(t.dtype) >= 8 ? std::vector<std::uint64_t>{}
                                                                    : RandomShape(rng, t.dtype);
      t.name = "t" + std::to_string(rng() % 1000) + "." + std::to_string(i);
      std::uint64_t size = ByteSize(t.dtype, t.shape);
      for (std::uint64_t b = 0; b < size; ++b) storage[i] += static_cast<char>(rng());
      if (rng() % 2 == 0) {
        t.bytes = AsBytes(storage[i]);
      } else {
        const std::string* src = &storage[i];
        t.fill = [src](std::uint64_t offset, std::span<std::byte> out) {
          std::memcpy(out.data(), src->data() + offset, out.size());
        };
      }
      expected.push_back({t.name, t.dtype, t.shape, storage[i]});
    }
    std::optional<Metadata> metadata;
    if (rng() % 3 == 0) metadata = Metadata{{"format", "pt"}};
    REQUIRE(WriteSafetensors(path, tensors, metadata).ok());
    format::Header header;
    std::vector<ReadTensor> back = ReadBack(path, &header);
    CHECK(header.header_size % 8 == 0);
    CHECK(header.metadata == metadata);
    // File order is the reference order, offsets contiguous from 0.
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < header.tensors.size(); ++i) {
      CHECK(header.tensors[i].begin == offset);
      offset = header.tensors[i].end;
      if (i > 0) {
        const auto& l = header.tensors[i - 1];
        const auto& r = header.tensors[i];
        CHECK((l.dtype > r.dtype || (l.dtype == r.dtype && l.name < r.name)));
      }
    }
    CHECK(8 + header.header_size + offset == std::filesystem::file_size(path));
    auto by_name = [](const ReadTensor& a, const ReadTensor& b) { return a.name < b.name; };
    std::sort(back.begin(), back.end(), by_name);
    std::sort(expected.begin(), expected.end(), by_name);
    CHECK(back == expected);
  }
}

TEST_CASE("round trip: a generated tensor larger than the write buffer is streamed") {
  TempDir dir;
  std::string path = dir / "big.safetensors";
  constexpr std::uint64_t kSize = (20u << 20) + 13;  // 20 MiB and a bit: several buffers
  std::uint64_t next_offset = 0;
  std::size_t max_chunk = 0;
  TensorData big;
  big.name = "big";
  big.dtype = DType::kU8;
  big.shape = {kSize};
  big.fill = [&](std::uint64_t offset, std::span<std::byte> out) {
    CHECK(offset == next_offset);
    next_offset += out.size();
    max_chunk = std::max(max_chunk, out.size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = GeneratedByte(1, offset + i);
  };
  const std::string small(8, '\x42');
  std::vector<TensorData> tensors = {big, Tensor("small", DType::kF64, {1}, small)};
  REQUIRE(WriteSafetensors(path, tensors).ok());
  CHECK(next_offset == kSize);
  CHECK(max_chunk <= (8u << 20));
  std::vector<ReadTensor> back = ReadBack(path);
  REQUIRE(back.size() == 2);
  CHECK(back[0].name == "small");
  CHECK(back[0].bytes == small);
  REQUIRE(back[1].bytes.size() == kSize);
  std::size_t mismatches = 0;
  for (std::uint64_t i = 0; i < kSize; ++i) {
    mismatches += back[1].bytes[i] != static_cast<char>(GeneratedByte(1, i));
  }
  CHECK(mismatches == 0);
}

// ---------------------------------------------------------------------------
// The reference-written real files.

struct Rewritten {
  std::string original;
  std::string rewritten;
  std::vector<ReadTensor> original_tensors;
  std::vector<ReadTensor> rewritten_tensors;
};

Rewritten Rewrite(const std::string& file, const TempDir& dir) {
  Rewritten r;
  std::string src = test::SharedDir() + "/research/real-files/" + file;
  format::Header header;
  r.original_tensors = ReadBack(src, &header);
  r.original = ReadFile(src);
  std::vector<TensorData> tensors;
  for (const ReadTensor& t : r.original_tensors)
    tensors.push_back(Tensor(t.name, t.dtype, t.shape, t.bytes));
  std::string dst = dir / file;
  Status s = WriteSafetensors(dst, tensors, header.metadata);
  REQUIRE_MESSAGE(s.ok(), shardload::test::ErrorText(s));
  r.rewritten = ReadFile(dst);
  r.rewritten_tensors = ReadBack(dst);
  auto by_name = [](const ReadTensor& a, const ReadTensor& b) { return a.name < b.name; };
  std::sort(r.original_tensors.begin(), r.original_tensors.end(), by_name);
  std::sort(r.rewritten_tensors.begin(), r.rewritten_tensors.end(), by_name);
  return r;
}

TEST_CASE("real files: reference-written files are reproduced byte for byte") {
  if (test::SkipWithoutShared()) return;
  TempDir dir;
  for (const char* file : {"candle_mel_filters.safetensors", "candle_csm_voices.safetensors",
                           "runai_test_empty.safetensors"}) {
    CAPTURE(file);
    Rewritten r = Rewrite(file, dir);
    CHECK(r.rewritten.size() == r.original.size());
    CHECK(r.rewritten == r.original);
    CHECK(r.rewritten_tensors == r.original_tensors);
  }
}

TEST_CASE("real files: older layouts give the same tensors in the current layout") {
  if (test::SkipWithoutShared()) return;
  TempDir dir;
  for (const char* file : {"runai_test.safetensors", "st_samples_overall.safetensors"}) {
    CAPTURE(file);
    Rewritten r = Rewrite(file, dir);
    CHECK(r.rewritten != r.original);  // JSON order / padding differ, as the README says
    REQUIRE(!r.original_tensors.empty());
    CHECK(r.rewritten_tensors == r.original_tensors);
  }
}

// ---------------------------------------------------------------------------
// Sharded checkpoints.

// U8 tensors named `names` with sizes `sizes`, data from GeneratedByte.
struct U8Set {
  std::vector<std::string> data;
  std::vector<TensorData> tensors;
  U8Set(const std::vector<std::string>& names, const std::vector<std::uint64_t>& sizes) {
    data.resize(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      for (std::uint64_t b = 0; b < sizes[i]; ++b)
        data[i] += static_cast<char>(GeneratedByte(i, b));
    }
    for (std::size_t i = 0; i < names.size(); ++i) {
      tensors.push_back(Tensor(names[i], DType::kU8, {sizes[i]}, data[i]));
    }
  }
};

std::vector<std::string> NamesIn(const std::string& path) {
  std::vector<std::string> names;
  for (const ReadTensor& t : ReadBack(path)) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  return names;
}

TEST_CASE("checkpoint: huggingface_hub's split, a tensor above the limit alone, index text") {
  TempDir dir;
  // huggingface_hub tests/test_serialization.py test_multiple_shards.
  U8Set set({"layer_1", "layer_2", "layer_3", "layer_4", "layer_5"}, {6, 10, 30, 2, 2});
  CheckpointWriteOptions options;
  options.max_shard_size = 10;
  options.shard_metadata = Metadata{{"format", "pt"}};
  std::string ckpt = dir / "nested/ckpt";  // created
  REQUIRE(WriteCheckpoint(ckpt, set.tensors, options).ok());
  CHECK(ListDir(ckpt) == std::vector<std::string>{
                             "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                             "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
                             "model.safetensors.index.json"});
  CHECK(NamesIn(ckpt + "/model-00001-of-00004.safetensors") == std::vector<std::string>{"layer_1"});
  CHECK(NamesIn(ckpt + "/model-00002-of-00004.safetensors") == std::vector<std::string>{"layer_3"});
  CHECK(NamesIn(ckpt + "/model-00003-of-00004.safetensors") == std::vector<std::string>{"layer_2"});
  CHECK(NamesIn(ckpt + "/model-00004-of-00004.safetensors") ==
        std::vector<std::string>{"layer_4", "layer_5"});
  CHECK(ReadFile(ckpt + "/model.safetensors.index.json") ==
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 50\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"layer_1\": \"model-00001-of-00004.safetensors\",\n"
        "    \"layer_2\": \"model-00003-of-00004.safetensors\",\n"
        "    \"layer_3\": \"model-00002-of-00004.safetensors\",\n"
        "    \"layer_4\": \"model-00004-of-00004.safetensors\",\n"
        "    \"layer_5\": \"model-00004-of-00004.safetensors\"\n"
        "  }\n"
        "}\n");
  format::Header header;
  std::vector<ReadTensor> shard = ReadBack(ckpt + "/model-00004-of-00004.safetensors", &header);
  CHECK(header.metadata == options.shard_metadata);
  REQUIRE(shard.size() == 2);
  CHECK(shard[0].bytes == set.data[3]);
  CHECK(shard[1].bytes == set.data[4]);
}

TEST_CASE("checkpoint: shard boundaries at exactly the limit") {
  TempDir dir;
  CheckpointWriteOptions options;
  options.max_shard_size = 10;
  U8Set fits({"a", "b", "c"}, {5, 5, 0});  // 5 + 5 == 10 stays; a 0-byte tensor still fits
  REQUIRE(WriteCheckpoint(dir / "fits", fits.tensors, options).ok());
  CHECK(ListDir(dir / "fits") == std::vector<std::string>{"model.safetensors"});
  CHECK(NamesIn(dir / "fits/model.safetensors") == std::vector<std::string>{"a", "b", "c"});

  U8Set over({"a", "b", "c", "d"}, {5, 6, 4, 11});
  REQUIRE(WriteCheckpoint(dir / "over", over.tensors, options).ok());
  CHECK(NamesIn(dir / "over/model-00001-of-00003.safetensors") == std::vector<std::string>{"a"});
  CHECK(NamesIn(dir / "over/model-00002-of-00003.safetensors") == std::vector<std::string>{"d"});
  CHECK(NamesIn(dir / "over/model-00003-of-00003.safetensors") ==
        std::vector<std::string>{"b", "c"});
}

TEST_CASE("checkpoint: single file, always_index, prefix, no tensors") {
  TempDir dir;
  U8Set set({"w", "b"}, {3, 1});
  REQUIRE(WriteCheckpoint(dir / "one", set.tensors).ok());
  CHECK(ListDir(dir / "one") == std::vector<std::string>{"model.safetensors"});
  std::string single = ReadFile(dir / "one/model.safetensors");
  std::string direct_path = dir / "direct.safetensors";
  REQUIRE(WriteSafetensors(direct_path, set.tensors).ok());
  CHECK(single == ReadFile(direct_path));

  CheckpointWriteOptions options;
  options.always_index = true;
  options.prefix = "diffusion_pytorch_model";
  REQUIRE(WriteCheckpoint(dir / "indexed", set.tensors, options).ok());
  CHECK(ListDir(dir / "indexed") ==
        std::vector<std::string>{"diffusion_pytorch_model-00001-of-00001.safetensors",
                                 "diffusion_pytorch_model.safetensors.index.json"});
  CHECK(ReadFile(dir / "indexed/diffusion_pytorch_model-00001-of-00001.safetensors") == single);
  CHECK(ReadFile(dir / "indexed/diffusion_pytorch_model.safetensors.index.json") ==
        "{\n  \"metadata\": {\n    \"total_size\": 4\n  },\n  \"weight_map\": {\n"
        "    \"b\": \"diffusion_pytorch_model-00001-of-00001.safetensors\",\n"
        "    \"w\": \"diffusion_pytorch_model-00001-of-00001.safetensors\"\n  }\n}\n");

  REQUIRE(WriteCheckpoint(dir / "empty", {}, options).ok());
  CHECK(ReadFile(dir / "empty/diffusion_pytorch_model.safetensors.index.json") ==
        "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {}\n}\n");
  CHECK(ReadFile(dir / "empty/diffusion_pytorch_model-00001-of-00001.safetensors") ==
        Framed("{}      "));
}

TEST_CASE("checkpoint: index keys sorted by code point, escaped as Python's json does") {
  TempDir dir;
  U8Set set({"\xc3\xa9", "a\"b", "B", "\xf0\x9f\x98\x80", "t\x7f\x01"}, {1, 1, 1, 1, 1});
  CheckpointWriteOptions options;
  options.always_index = true;
  REQUIRE(WriteCheckpoint(dir.path(), set.tensors, options).ok());
  const char* shard = "\"model-00001-of-00001.safetensors\"";
  CHECK(ReadFile(dir / "model.safetensors.index.json") ==
        std::string("{\n  \"metadata\": {\n    \"total_size\": 5\n  },\n  \"weight_map\": {\n") +
            "    \"B\": " + shard + ",\n" + "    \"a\\\"b\": " + shard + ",\n" +
            "    \"t\\u007f\\u0001\": " + shard + ",\n" + "    \"\\u00e9\": " + shard + ",\n" +
            "    \"\\ud83d\\ude00\": " + shard + "\n  }\n}\n");
}

// ---------------------------------------------------------------------------
// Errors.

void CheckError(const Status& s, ErrorCode code, const std::string& path,
                const std::string& tensor) {
  REQUIRE_FALSE(s.ok());
  CAPTURE(s.error().ToString());
  CHECK(s.error().code == code);
  CHECK(s.error().path == path);
  CHECK(s.error().tensor == tensor);
  CHECK(s.error().ToString().find(path) != std::string::npos);
  if (!tensor.empty()) CHECK(s.error().ToString().find("`" + tensor + "`") != std::string::npos);
}

TEST_CASE("errors: invalid tensors are refused before anything is written") {
  TempDir dir;
  std::string path = dir / "bad.safetensors";
  const std::string four(4, 'x'), three(3, 'x');
  auto refused = [&](std::vector<TensorData> tensors, ErrorCode code, const std::string& tensor) {
    CheckError(WriteSafetensors(path, tensors), code, path, tensor);
    CHECK(ListDir(dir.path()).empty());
  };
  SUBCASE("duplicate name") {
    refused({Tensor("w", DType::kU8, {4}, four), Tensor("w", DType::kF32, {1}, four)},
            ErrorCode::kInvalidArgument, "w");
  }
  SUBCASE("wrong byte count") {
    refused({Tensor("w", DType::kF32, {2}, four)}, ErrorCode::kInvalidArgument, "w");
    refused({Tensor("s", DType::kF16, {}, three)}, ErrorCode::kInvalidArgument, "s");
  }
  SUBCASE("sub-byte counts that do not fill whole bytes") {
    refused({Tensor("f4", DType::kF4, {3}, three)}, ErrorCode::kMisalignedSlice, "f4");
    refused({Tensor("f6", DType::kF6E2M3, {3}, three)}, ErrorCode::kMisalignedSlice, "f6");
    refused({Tensor("f6", DType::kF6E3M2, {2, 3}, three)}, ErrorCode::kMisalignedSlice, "f6");
  }
  SUBCASE("invalid UTF-8 name, reserved name") {
    refused({Tensor("a\xff", DType::kU8, {0}, "")}, ErrorCode::kInvalidUtf8, "a\\xff");
    refused({Tensor("\xed\xa0\x80", DType::kU8, {0}, "")}, ErrorCode::kInvalidUtf8,
            "\\xed\\xa0\\x80");
    refused({Tensor("__metadata__", DType::kU8, {0}, "")}, ErrorCode::kInvalidArgument,
            "__metadata__");
  }
  SUBCASE("element or bit count overflows") {
    refused({Tensor("o", DType::kU8, {1ull << 32, 1ull << 32}, "")}, ErrorCode::kValidationOverflow,
            "o");
    refused({Tensor("o", DType::kU64, {1ull << 61}, "")}, ErrorCode::kValidationOverflow, "o");
  }
  SUBCASE("metadata: duplicate key, invalid UTF-8") {
    std::vector<TensorData> none;
    CheckError(WriteSafetensors(path, none, Metadata{{"k", "1"}, {"k", "2"}}),
               ErrorCode::kInvalidArgument, path, "");
    CheckError(WriteSafetensors(path, none, Metadata{{"k", "\xc0\x80"}}), ErrorCode::kInvalidUtf8,
               path, "");
    CHECK(ListDir(dir.path()).empty());
  }
}

TEST_CASE("errors: sub-byte sizes that fill whole bytes are accepted") {
  TempDir dir;
  const std::string three(3, 'x');
  std::vector<TensorData> tensors = {Tensor("f4", DType::kF4, {2, 3}, three),
                                     Tensor("f6a", DType::kF6E2M3, {4}, three),
                                     Tensor("f6b", DType::kF6E3M2, {2, 2}, three),
                                     Tensor("huge0", DType::kU64, {0, ~0ull, ~0ull}, "")};
  REQUIRE(WriteSafetensors(dir / "ok.safetensors", tensors).ok());
  CHECK(ReadBack(dir / "ok.safetensors").size() == 4);
}

TEST_CASE("errors: the 100,000,000-byte header limit") {
  TempDir dir;
  std::string path = dir / "h.safetensors";
  // {"__metadata__":{"k":"VALUE"}} is 25 bytes plus the value.
  std::string value(100'000'000 - 25 + 1, 'v');
  CheckError(WriteSafetensors(path, {}, Metadata{{"k", value}}), ErrorCode::kHeaderTooLarge, path,
             "");
  CHECK(ListDir(dir.path()).empty());
  value.pop_back();  // N == 100,000,000 exactly is allowed
  REQUIRE(WriteSafetensors(path, {}, Metadata{{"k", value}}).ok());
  CHECK(std::filesystem::file_size(path) == 8 + 100'000'000);
}

TEST_CASE("errors: unwritable or missing directories, bad prefix") {
  TempDir dir;
  const std::string data(4, 'x');
  std::vector<TensorData> tensors = {Tensor("w", DType::kF32, {1}, data)};
  std::string missing = dir / "missing/x.safetensors";
  Status s = WriteSafetensors(missing, tensors);
  CheckError(s, ErrorCode::kIoError, missing, "");
  CHECK(s.error().sys_errno == ENOENT);

  test::WriteFile(dir / "file", "not a directory");
  std::string under_file = dir / "file/x.safetensors";
  s = WriteSafetensors(under_file, tensors);
  CheckError(s, ErrorCode::kIoError, under_file, "");
  CHECK(s.error().sys_errno == ENOTDIR);
  s = WriteCheckpoint(dir / "file/ckpt", tensors);
  CheckError(s, ErrorCode::kIoError, dir / "file/ckpt", "");

  if (::geteuid() != 0) {
    std::string ro = dir / "ro";
    std::filesystem::create_directory(ro);
    ::chmod(ro.c_str(), 0555);
    s = WriteSafetensors(ro + "/x.safetensors", tensors);
    CheckError(s, ErrorCode::kIoError, ro + "/x.safetensors", "");
    CHECK(s.error().sys_errno == EACCES);
    ::chmod(ro.c_str(), 0755);
  } else if (std::filesystem::is_directory("/sys")) {
    // Root ignores permission bits, but sysfs refuses new files even to root.
    s = WriteSafetensors("/sys/x.safetensors", tensors);
    CheckError(s, ErrorCode::kIoError, "/sys/x.safetensors", "");
    CHECK((s.error().sys_errno == EACCES || s.error().sys_errno == EROFS ||
           s.error().sys_errno == EPERM));
  }

  CheckpointWriteOptions options;
  options.prefix = "a/b";
  CheckError(WriteCheckpoint(dir / "ckpt", tensors, options), ErrorCode::kInvalidArgument,
             dir / "ckpt", "");
  CHECK_FALSE(Exists(dir / "ckpt"));
}

TEST_CASE("errors: WriteCheckpoint validates every tensor before writing any shard") {
  TempDir dir;
  U8Set set({"a", "b", "a"}, {4, 4, 4});
  CheckpointWriteOptions options;
  options.max_shard_size = 4;
  std::string ckpt = dir / "ckpt";
  CheckError(WriteCheckpoint(ckpt, set.tensors, options), ErrorCode::kInvalidArgument, ckpt, "a");
  CHECK_FALSE(Exists(ckpt));
  set.tensors[2].name = "c";
  set.tensors[2].shape = {5};  // 4 bytes given
  CheckError(WriteCheckpoint(ckpt, set.tensors, options), ErrorCode::kInvalidArgument, ckpt, "c");
  CHECK_FALSE(Exists(ckpt));
}

// ---------------------------------------------------------------------------
// Atomicity.

TensorData ThrowingTensor(std::uint64_t size, std::uint64_t throw_at) {
  TensorData t;
  t.name = "gen";
  t.dtype = DType::kU8;
  t.shape = {size};
  t.fill = [throw_at](std::uint64_t offset, std::span<std::byte> out) {
    if (offset + out.size() > throw_at) throw std::runtime_error("generator failed");
    std::memset(out.data(), 1, out.size());
  };
  return t;
}

TEST_CASE("atomicity: a failed write leaves no target and no temporary file") {
  TempDir dir;
  std::string path = dir / "x.safetensors";
  // Fails after more than one buffer was written to the temporary file.
  Status s = WriteSafetensors(path, std::vector{ThrowingTensor(20u << 20, 10u << 20)});
  CheckError(s, ErrorCode::kInternal, path, "gen");
  CHECK(s.error().detail.find("generator failed") != std::string::npos);
  CHECK(ListDir(dir.path()).empty());
}

TEST_CASE("atomicity: an existing target is replaced only on success") {
  TempDir dir;
  std::string path = dir / "x.safetensors";
  test::WriteFile(path, "old contents");
  REQUIRE_FALSE(WriteSafetensors(path, std::vector{ThrowingTensor(1000, 500)}).ok());
  CHECK(ReadFile(path) == "old contents");
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"x.safetensors"});

  // rename() onto a directory fails after the whole file was written.
  std::filesystem::create_directory(dir / "d.safetensors");
  Status s = WriteSafetensors(dir / "d.safetensors", {});
  CheckError(s, ErrorCode::kIoError, dir / "d.safetensors", "");
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"d.safetensors", "x.safetensors"});

  const std::string data = "ab";
  REQUIRE(WriteSafetensors(path, std::vector{Tensor("n", DType::kI16, {}, data)}).ok());
  CHECK(ReadBack(path).at(0).bytes == data);
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"d.safetensors", "x.safetensors"});
  // A new file gets the usual 0666 & ~umask mode, not mkstemp's 0600.
  mode_t mask = ::umask(022);
  ::umask(mask);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        static_cast<std::filesystem::perms>(0666 & ~mask));
}

TEST_CASE("atomicity: a checkpoint failing in a later shard writes no index") {
  TempDir dir;
  U8Set set({"a", "b"}, {8, 8});
  set.tensors.push_back(ThrowingTensor(8, 4));
  CheckpointWriteOptions options;
  options.max_shard_size = 8;
  Status s = WriteCheckpoint(dir.path(), set.tensors, options);
  CheckError(s, ErrorCode::kInternal, dir / "model-00003-of-00003.safetensors", "gen");
  CHECK(ListDir(dir.path()) == std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                        "model-00002-of-00003.safetensors"});
}

TEST_CASE("atomicity: a write() error (EFBIG) is reported and cleaned up") {
  TempDir dir;
  std::string path = dir / "x.safetensors";
  struct rlimit old_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  struct sigaction ignore = {}, old_action;
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGXFSZ, &ignore, &old_action) == 0);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  TensorData t = ThrowingTensor(1u << 20, ~0ull);
  Status s = WriteSafetensors(path, std::vector{t});
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  CheckError(s, ErrorCode::kIoError, path, "");
  CHECK(s.error().sys_errno == EFBIG);
  CHECK(ListDir(dir.path()).empty());
}

}  // namespace
}  // namespace shardload
