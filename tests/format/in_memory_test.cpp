// shardload/in_memory.h against the file paths it mirrors: every file of the
// hostile-header corpus and every real file parses from memory exactly as
// ReadHeaderFile reads it from disk (same header, or the same error code and
// message), and serializing into a buffer gives WriteSafetensors' bytes.
// Thread-compatible: each test uses its own temporary directory.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "format/header.h"
#include "shardload/in_memory.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

using test::TempDir;

std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// PATH parsed from memory agrees with ReadHeaderFile(PATH).
void CheckSameAsFile(const std::string& path) {
  CAPTURE(path);
  std::string bytes = test::ReadFile(path);
  Result<format::Header> from_file = format::ReadHeaderFile(path);
  Result<format::Header> from_memory = format::ParseHeaderBytes(Bytes(bytes), path);
  Result<BufferHeader> buffer = ParseSafetensorsBuffer(Bytes(bytes), path);
  REQUIRE(from_file.has_value() == from_memory.has_value());
  REQUIRE(from_file.has_value() == buffer.has_value());
  if (!from_file.has_value()) {
    CHECK(from_memory.error().ToString() == from_file.error().ToString());
    CHECK(buffer.error().ToString() == from_file.error().ToString());
    return;
  }
  CHECK(from_memory->header_size == from_file->header_size);
  CHECK(from_memory->metadata == from_file->metadata);
  CHECK(buffer->metadata == from_file->metadata);
  REQUIRE(from_memory->tensors.size() == from_file->tensors.size());
  REQUIRE(buffer->tensors.size() == from_file->tensors.size());
  std::vector<format::HeaderTensor> by_offset = from_file->tensors;
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const auto& a, const auto& b) { return a.begin < b.begin; });
  for (std::size_t i = 0; i < by_offset.size(); ++i) {
    const format::HeaderTensor& want = by_offset[i];
    const BufferTensor& got = buffer->tensors[i];
    CHECK(got.name == want.name);
    CHECK(got.dtype == want.dtype);
    CHECK(got.shape == want.shape);
    CHECK(got.offset == 8 + from_file->header_size + want.begin);
    CHECK(got.size == want.end - want.begin);
    CHECK(from_memory->tensors[i].name == from_file->tensors[i].name);
  }
}

TEST_CASE("from memory: every corpus file as from its file") {
  std::size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(SHARDLOAD_SOURCE_DIR) + "/tests/corpus/header")) {
    if (entry.path().extension() != ".safetensors") continue;
    CheckSameAsFile(entry.path().string());
    ++files;
  }
  CHECK(files >= 80);
}

TEST_CASE("from memory: every real file as from its file") {
  if (test::SkipWithoutShared()) return;
  std::string dir = test::SharedDir() + "/research/real-files";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") CheckSameAsFile(entry.path().string());
  }
}

TEST_CASE("from memory: a buffer shorter than the prefix") {
  std::string bytes = "\x08\x00\x00";
  Result<BufferHeader> parsed = ParseSafetensorsBuffer(Bytes(bytes), "<bytes>");
  REQUIRE_FALSE(parsed.has_value());
  CHECK(parsed.error().code == ErrorCode::kHeaderTooSmall);
  CHECK(parsed.error().path == "<bytes>");
}

TEST_CASE("serialize into a buffer: WriteSafetensors' bytes, fillers included") {
  TempDir dir;
  std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  std::vector<std::uint8_t> mask = {1, 0, 1};
  std::vector<TensorData> tensors(3);
  tensors[0] = {"w", DType::kF32, {2, 3}, std::as_bytes(std::span(w)), {}};
  tensors[1] = {"mask", DType::kBool, {3}, std::as_bytes(std::span(mask)), {}};
  tensors[2] = {"gen", DType::kI16, {5}, {}, [](std::uint64_t offset, std::span<std::byte> out) {
                  for (std::size_t i = 0; i < out.size(); ++i) {
                    out[i] = static_cast<std::byte>(offset + i);
                  }
                }};
  Metadata metadata = {{"format", "pt"}};
  REQUIRE(WriteSafetensors(dir / "m.safetensors", tensors, metadata).ok());
  std::string want = test::ReadFile(dir / "m.safetensors");
  Result<SerializedLayout> layout = LayOutSafetensorsBuffer(tensors, metadata, "<bytes>");
  REQUIRE(layout.has_value());
  REQUIRE(layout->total_size == want.size());
  std::vector<std::byte> out(layout->total_size);
  REQUIRE(SerializeSafetensorsInto(tensors, *layout, out, "<bytes>").ok());
  CHECK(std::memcmp(out.data(), want.data(), want.size()) == 0);
  out.push_back(std::byte{0});
  Status wrong = SerializeSafetensorsInto(tensors, *layout, out, "<bytes>");
  CHECK(wrong.error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("serialize into a buffer: refusals as WriteSafetensors'") {
  std::vector<float> w = {1.0f, 2.0f};
  std::vector<TensorData> tensors = {{"w", DType::kF32, {3}, std::as_bytes(std::span(w)), {}}};
  Result<SerializedLayout> layout = LayOutSafetensorsBuffer(tensors, std::nullopt, "<bytes>");
  REQUIRE_FALSE(layout.has_value());
  CHECK(layout.error().code == ErrorCode::kInvalidArgument);
  CHECK(layout.error().tensor == "w");
}

}  // namespace
}  // namespace shardload
