// The real reference-written files in ../shared/research/real-files are
// accepted with exactly the tensors their README lists; the hostile one is
// refused like the reference refuses it.
// Thread-compatible: reads shared files only.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "format/header.h"
#include "support/test_util.h"

namespace shardload::format {
namespace {

struct Expected {
  std::string name;
  DType dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

std::string RealFile(const std::string& name) {
  return test::SharedDir() + "/research/real-files/" + name;
}

// Reads `file` and checks N, metadata and the tensors in JSON order.
void CheckRealFile(const std::string& file, std::uint64_t n,
                   const std::optional<Metadata>& metadata,
                   const std::vector<Expected>& tensors) {
  CAPTURE(file);
  Result<Header> header = ReadHeaderFile(RealFile(file));
  if (!header.has_value()) FAIL(header.error().ToString());
  CHECK(header->header_size == n);
  CHECK(header->metadata == metadata);
  REQUIRE(header->tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const HeaderTensor& got = header->tensors[i];
    CAPTURE(tensors[i].name);
    CHECK(got.name == tensors[i].name);
    CHECK(DTypeName(got.dtype) == DTypeName(tensors[i].dtype));
    CHECK(got.shape == tensors[i].shape);
    CHECK(got.begin == tensors[i].begin);
    CHECK(got.end == tensors[i].end);
  }
}

TEST_CASE("real files: st_samples_overall (pre-0.3 writer, unpadded, unaligned)") {
  if (test::SkipWithoutShared()) return;
  CheckRealFile("st_samples_overall.safetensors", 526, Metadata{{"test", "a"}},
                {{"B", DType::kU8, {6}, 0, 6},
                 {"H", DType::kU16, {6}, 6, 18},
                 {"I", DType::kU32, {6}, 18, 42},
                 {"b", DType::kI8, {6}, 42, 48},
                 {"d", DType::kF64, {6}, 48, 96},
                 {"e", DType::kF16, {6}, 96, 108},
                 {"f", DType::kF32, {6}, 108, 132},
                 {"h", DType::kI16, {6}, 132, 144},
                 {"i", DType::kI32, {6}, 144, 168}});
}

TEST_CASE("real files: candle_mel_filters") {
  if (test::SkipWithoutShared()) return;
  CheckRealFile("candle_mel_filters.safetensors", 72, std::nullopt,
                {{"mel_80", DType::kF32, {80, 201}, 0, 64320}});
}

TEST_CASE("real files: candle_csm_voices") {
  if (test::SkipWithoutShared()) return;
  CheckRealFile("candle_csm_voices.safetensors", 144, std::nullopt,
                {{"tokens", DType::kI64, {1, 982, 33}, 0, 259248},
                 {"mask", DType::kU8, {1, 982, 33}, 259248, 291654}});
}

TEST_CASE("real files: runai_test (JSON order differs from offset order)") {
  if (test::SkipWithoutShared()) return;
  std::vector<std::uint64_t> shape = {3, 2};
  CheckRealFile("runai_test.safetensors", 744, Metadata{{"format", "pt"}},
                {{"tensor1.int64", DType::kI64, shape, 0, 48},
                 {"tensor1.float64", DType::kF64, shape, 48, 96},
                 {"tensor1.float32", DType::kF32, shape, 96, 120},
                 {"tensor1.bfloat16", DType::kBF16, shape, 144, 156},
                 {"tensor1.int32", DType::kI32, shape, 120, 144},
                 {"tensor1.float16", DType::kF16, shape, 156, 168},
                 {"tensor1.int16", DType::kI16, shape, 168, 180},
                 {"tensor1.int8", DType::kI8, shape, 180, 186},
                 {"tensor1.uint8", DType::kU8, shape, 186, 192},
                 {"tensor1.bool", DType::kBool, shape, 192, 198}});
}

TEST_CASE("real files: runai_test_empty ({} padded, no tensors)") {
  if (test::SkipWithoutShared()) return;
  CheckRealFile("runai_test_empty.safetensors", 8, std::nullopt, {});
}

TEST_CASE("real files: hostile syoyo_abuse1 is kInvalidHeaderLength") {
  if (test::SkipWithoutShared()) return;
  std::string path = RealFile("hostile/syoyo_abuse1.safetensors");
  Result<Header> header = ReadHeaderFile(path);
  REQUIRE_FALSE(header.has_value());
  INFO(header.error().ToString());
  CHECK(ErrorCodeName(header.error().code) == "invalid_header_length");
  CHECK(header.error().path == path);
  CHECK(header.error().ToString().find(path) != std::string::npos);
}

}  // namespace
}  // namespace shardload::format
