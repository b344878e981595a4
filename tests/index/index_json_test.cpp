// index::ParseIndexJson on malformed indexes and on the three real index
// files in shared/research/real-index (which come without their shards).
#include <chrono>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "index/index_fixtures.h"
#include "index/index_json.h"
#include "shardload/checkpoint.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

const std::string kPath = "/ckpt/model.safetensors.index.json";

Error ParseError(std::string_view json, ErrorCode code, const std::vector<std::string>& mentions) {
  INFO("json: ", std::string(json));
  Result<index::ParsedIndex> r = index::ParseIndexJson(json, kPath);
  REQUIRE_FALSE(r.has_value());
  std::string text = r.error().ToString();
  INFO(text);
  CHECK(ErrorCodeName(r.error().code) == ErrorCodeName(code));
  CHECK(r.error().path == kPath);
  for (const std::string& m : mentions) {
    CHECK_MESSAGE(text.find(m) != std::string::npos, "missing \"", m, "\"");
  }
  return r.error();
}

TEST_CASE("well-formed index") {
  Result<index::ParsedIndex> r = index::ParseIndexJson(
      R"({"metadata": {"total_size": 12, "x": "y"}, "other": [1],
          "weight_map": {"t2": "b.safetensors", "t1": "a.safetensors", "t3": "b.safetensors"}})",
      kPath);
  REQUIRE_MESSAGE(r.has_value(), shardload::test::ErrorText(r));
  CHECK(r->shard_names == std::vector<std::string>{"a.safetensors", "b.safetensors"});
  REQUIRE(r->entries.size() == 3);
  CHECK(r->entries[0].tensor == "t2");
  CHECK(r->entries[0].shard == 1);
  CHECK(r->entries[1].shard == 0);
  CHECK(r->entries[2].shard == 1);
  CHECK(r->total_size == 12u);
  CHECK(r->metadata == Metadata{{"total_size", "12"}, {"x", "y"}});
  CHECK(index::TensorsOfShard(*r, 1).first == "t2");
  CHECK(index::TensorsOfShard(*r, 1).count == 2);
}

TEST_CASE("index JSON of the wrong shape") {
  ParseError("", ErrorCode::kIndexJson, {"invalid JSON", "line 1"});
  ParseError("{\"weight_map\": {}", ErrorCode::kIndexJson, {"invalid JSON"});
  ParseError("{\"weight_map\": {},}", ErrorCode::kIndexJson, {"invalid JSON"});
  ParseError("{\"weight_map\": {}} x", ErrorCode::kIndexJson, {"invalid JSON"});
  ParseError("{\n\"weight_map\": {}\n// c\n}", ErrorCode::kIndexJson, {"line 3"});
  ParseError("\xef\xbb\xbf{\"weight_map\": {}}", ErrorCode::kIndexJson, {"byte order mark"});
  ParseError(std::string("{\"weight_map\": {}}\0junk", 23), ErrorCode::kIndexJson, {"NUL"});
  ParseError("{\"weight_map\": {\"a\xff\": \"a.safetensors\"}}", ErrorCode::kIndexJson,
             {"invalid UTF-8", "line 1, column 19"});
  ParseError("{\"weight_map\": {\"a\xed\xa0\x80\": \"a.safetensors\"}}", ErrorCode::kIndexJson,
             {"invalid UTF-8"});  // encoded surrogate
  ParseError("{\"weight_map\": {\"a\xc0\xaf\": \"a.safetensors\"}}", ErrorCode::kIndexJson,
             {"invalid UTF-8"});  // overlong
  ParseError(R"({"weight_map": {"a\udc00": "a.safetensors"}})", ErrorCode::kIndexJson, {"UTF-8"});
  ParseError(R"({"weight_map": {"a\ud800": "a.safetensors"}})", ErrorCode::kIndexJson,
             {"invalid JSON"});
  ParseError("[]", ErrorCode::kIndexJson, {"must be a JSON object", "an array"});
  ParseError("{}", ErrorCode::kIndexJson, {"weight_map"});
  ParseError(R"({"metadata": {"total_size": 1}})", ErrorCode::kIndexJson, {"weight_map"});
  ParseError(R"({"weight_map": []})", ErrorCode::kIndexJson, {"weight_map", "an array"});
  ParseError(R"({"weight_map": null})", ErrorCode::kIndexJson, {"weight_map", "null"});
  Error e = ParseError(R"({"weight_map": {"w.0": 3}})", ErrorCode::kIndexJson,
                       {"weight_map value", "a number", "w.0"});
  CHECK(e.tensor == "w.0");
  ParseError(R"({"weight_map": {"w.0": null}})", ErrorCode::kIndexJson, {"w.0", "null"});
  ParseError(R"({"weight_map": {"w.0": ["a.safetensors"]}})", ErrorCode::kIndexJson, {"w.0"});
  ParseError(R"({"metadata": [], "weight_map": {}})", ErrorCode::kIndexJson, {"\"metadata\""});
  ParseError(R"({"metadata": null, "weight_map": {}})", ErrorCode::kIndexJson, {"\"metadata\""});
  for (const char* bad : {"\"5\"", "-1", "1.5", "1e3", "18446744073709551616", "null", "{}"}) {
    CAPTURE(bad);
    ParseError(std::string(R"({"metadata": {"total_size": )") + bad + R"(}, "weight_map": {}})",
               ErrorCode::kIndexJson, {"metadata.total_size"});
  }
  ParseError(R"({"weight_map": {}, "weight_map": {}})", ErrorCode::kIndexJson,
             {"\"weight_map\" appears twice"});
  ParseError(R"({"metadata": {"a": 1, "a": 2}, "weight_map": {}})", ErrorCode::kIndexJson,
             {"\"a\" appears twice", "metadata"});
}

TEST_CASE("a tensor twice in weight_map is refused") {
  Error e = ParseError(R"({"weight_map": {"w": "a.safetensors", "v": "a.safetensors",
                                          "w": "b.safetensors"}})",
                       ErrorCode::kDuplicateTensor, {"w", "a.safetensors", "b.safetensors"});
  CHECK(e.tensor == "w");
}

TEST_CASE("deep nesting in metadata: bounded, no stack overflow") {
  auto with = [](std::size_t depth) {
    return R"({"metadata": {"deep": )" + std::string(depth, '[') + std::string(depth, ']') +
           R"(}, "weight_map": {}})";
  };
  Result<index::ParsedIndex> r = index::ParseIndexJson(with(index::kMaxMetadataDepth), kPath);
  REQUIRE_MESSAGE(r.has_value(), shardload::test::ErrorText(r));
  CHECK(r->metadata[0].second.size() == 2 * index::kMaxMetadataDepth);
  ParseError(with(index::kMaxMetadataDepth + 1), ErrorCode::kIndexJson, {"deep", "nests deeper"});
  ParseError(with(1000000), ErrorCode::kIndexJson, {"deep", "nests deeper"});
  // total_size too: its error message prints the value, which must not recurse.
  std::string deep_total = R"({"metadata": {"total_size": )" + std::string(100000, '[') +
                           std::string(100000, ']') + R"(}, "weight_map": {}})";
  ParseError(deep_total, ErrorCode::kIndexJson, {"total_size", "nests deeper"});
  // Deep nesting in ignored top-level keys is parsed without recursion too.
  std::string ignored = R"({"x": )" + std::string(1000000, '[') + std::string(1000000, ']') +
                        R"(, "weight_map": {}})";
  CHECK(index::ParseIndexJson(ignored, kPath).has_value());
}

TEST_CASE("shard name rules") {
  for (const char* ok : {"model-00001-of-00002.safetensors", "sub/x.safetensors", "a b.safetensors",
                         "x..y.safetensors", "...safetensors", "\xc3\xa9.safetensors"}) {
    CAPTURE(ok);
    CHECK(index::ShardNameProblem(ok).empty());
  }
  for (const char* bad : {"", "/x.safetensors", "../x.safetensors", "a/../x.safetensors",
                          "a/./x.safetensors", "C:\\x.safetensors", "..\\x.safetensors",
                          "Z:x.safetensors", "x.safetensors\\", "x.bin", "a//x.safetensors"}) {
    CAPTURE(bad);
    CHECK_FALSE(index::ShardNameProblem(bad).empty());
  }
}

struct RealIndex {
  const char* file;
  std::size_t tensors;
  std::size_t shards;
  std::uint64_t total_size;
  const char* first_shard;
};

const RealIndex kRealIndexes[] = {
    {"falcon-180B-chat.model.safetensors.index.json", 644, 81, 359045130240ull,
     "model-00001-of-00081.safetensors"},
    {"WizardLM-2-8x22B.model.safetensors.index.json", 1739, 59, 281241268224ull,
     "model-00001-of-00059.safetensors"},
    {"granite-3.1-1b-a400m-instruct.model.safetensors.index.json", 218, 2, 5338513408ull,
     "model-00001-of-00002.safetensors"},
};

std::string RealIndexPath(const RealIndex& r) {
  return SharedDir() + "/research/real-index/" + r.file;
}

TEST_CASE("the three real index files parse") {
  if (SkipWithoutShared()) return;
  for (const RealIndex& real : kRealIndexes) {
    std::string file = real.file;
    CAPTURE(file);
    auto start = std::chrono::steady_clock::now();
    Result<index::ParsedIndex> r = index::ReadIndexFile(RealIndexPath(real));
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    REQUIRE_MESSAGE(r.has_value(), shardload::test::ErrorText(r));
    MESSAGE(file, ": parsed in ", us, " us");
    CHECK(r->entries.size() == real.tensors);
    CHECK(r->shard_names.size() == real.shards);
    CHECK(r->total_size == real.total_size);
    CHECK(r->metadata == Metadata{{"total_size", std::to_string(real.total_size)}});
    CHECK(r->shard_names.front() == real.first_shard);
    std::vector<std::size_t> per_shard(r->shard_names.size());
    for (const index::IndexEntry& e : r->entries) ++per_shard[e.shard];
    for (std::size_t n : per_shard) CHECK(n > 0);
  }
  // granite: 203 / 15 tensors (README).
  Result<index::ParsedIndex> granite = index::ReadIndexFile(RealIndexPath(kRealIndexes[2]));
  REQUIRE(granite.has_value());
  CHECK(index::TensorsOfShard(*granite, 0).count == 203);
  CHECK(index::TensorsOfShard(*granite, 1).count == 15);
}

TEST_CASE("opening a real index without its shards fails cleanly") {
  if (SkipWithoutShared()) return;
  for (const RealIndex& real : kRealIndexes) {
    std::string file = real.file;
    CAPTURE(file);
    std::string path = RealIndexPath(real);
    Result<Checkpoint> c = Checkpoint::Open(path);
    std::string shard = SharedDir() + "/research/real-index/" + real.first_shard;
    Error e =
        ExpectError(c, ErrorCode::kShardMissing, {real.first_shard, path, "more shard(s) missing"});
    CHECK(e.path == shard);
    Result<index::ParsedIndex> r = index::ReadIndexFile(path);
    REQUIRE(r.has_value());
    CHECK(e.tensor == index::TensorsOfShard(*r, 0).first);
    CHECK_FALSE(e.tensor.empty());
  }
}

}  // namespace
}  // namespace shardload::test
