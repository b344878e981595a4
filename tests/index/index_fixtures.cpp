// Builders for the index tests (see index_fixtures.h).
#include "index/index_fixtures.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include <doctest/doctest.h>

#include "shardload/dtype.h"
#include "support/test_util.h"

namespace shardload::test {

std::uint64_t BytesOf(const FakeTensor& t) {
  std::optional<DType> dtype = ParseDType(t.dtype);
  if (!dtype) throw std::invalid_argument("bad dtype " + t.dtype);
  std::uint64_t n = 1;
  for (std::uint64_t d : t.shape) n *= d;
  return n * DTypeBits(*dtype) / 8;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

namespace {

std::string HeaderJson(const std::vector<FakeTensor>& tensors, std::string_view metadata) {
  std::string json = "{";
  if (!metadata.empty()) json += "\"__metadata__\":" + std::string(metadata);
  std::uint64_t begin = 0;
  for (const FakeTensor& t : tensors) {
    if (json.size() > 1) json += ",";
    std::string shape;
    for (std::uint64_t d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    std::uint64_t end = begin + BytesOf(t);
    json += JsonString(t.name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[" + shape +
            "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
    begin = end;
  }
  return json + "}";
}

}  // namespace

std::string ShardBytes(const std::vector<FakeTensor>& tensors, std::string_view metadata_json) {
  std::uint64_t total = 0;
  for (const FakeTensor& t : tensors) total += BytesOf(t);
  std::string data(total, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  return RawSafetensors(HeaderJson(tensors, metadata_json), data);
}

std::uint64_t ExpectedOffset(const std::vector<FakeTensor>& tensors, std::string_view name,
                             std::string_view metadata_json) {
  std::uint64_t offset = 8 + HeaderJson(tensors, metadata_json).size();
  for (const FakeTensor& t : tensors) {
    if (t.name == name) return offset;
    offset += BytesOf(t);
  }
  throw std::invalid_argument("no tensor " + std::string(name));
}

std::string IndexJson(const std::vector<std::pair<std::string, std::string>>& weight_map,
                      std::optional<std::uint64_t> total_size, std::string_view extra_metadata) {
  std::string metadata;
  if (total_size) metadata = "\"total_size\": " + std::to_string(*total_size);
  if (!extra_metadata.empty()) {
    metadata += (metadata.empty() ? "" : ", ") + std::string(extra_metadata);
  }
  std::string json = "{\n  \"metadata\": {" + metadata + "},\n  \"weight_map\": {";
  for (std::size_t i = 0; i < weight_map.size(); ++i) {
    json += (i ? ",\n    " : "\n    ") + JsonString(weight_map[i].first) + ": " +
            JsonString(weight_map[i].second);
  }
  return json + "\n  }\n}\n";
}

std::string WriteSharded(const std::string& dir, const std::vector<ShardSpec>& shards,
                         const std::string& index_name) {
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::uint64_t total = 0;
  for (const ShardSpec& shard : shards) {
    WriteFile(dir + "/" + shard.name, ShardBytes(shard.tensors, shard.metadata));
    for (const FakeTensor& t : shard.tensors) {
      weight_map.emplace_back(t.name, shard.name);
      total += BytesOf(t);
    }
  }
  std::string index_path = dir + "/" + index_name;
  WriteFile(index_path, IndexJson(weight_map, total));
  return index_path;
}

std::vector<ShardSpec> TwoShards(const std::string& prefix) {
  // Shard 2 is listed first and tensors are out of name order on purpose.
  return {
      {prefix + "-00002-of-00002.safetensors",
       {{"lm_head.weight", "BF16", {4, 2}}, {"model.norm.weight", "F32", {2}}}},
      {prefix + "-00001-of-00002.safetensors",
       {{"model.layers.0.w", "F16", {3}},
        {"model.embed.weight", "F32", {2, 3}},
        {"model.layers.0.b", "U8", {5}}}},
  };
}

Error ExpectError(const Result<Checkpoint>& result, ErrorCode code,
                  const std::vector<std::string>& mentions) {
  REQUIRE_FALSE(result.has_value());
  const Error& e = result.error();
  std::string text = e.ToString();
  INFO(text);
  CHECK(ErrorCodeName(e.code) == ErrorCodeName(code));
  for (const std::string& m : mentions) {
    CHECK_MESSAGE(text.find(m) != std::string::npos, "missing \"", m, "\"");
  }
  return e;
}

void MakeSymlink(const std::string& target, const std::string& link) {
  std::filesystem::create_directories(std::filesystem::path(link).parent_path());
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    throw std::runtime_error("symlink failed: " + link);
  }
}

}  // namespace shardload::test
