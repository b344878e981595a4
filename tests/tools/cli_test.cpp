// End-to-end tests of the shardload CLI: exit codes, --help, inspect output
// (text and JSON) on generated and broken checkpoints.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "support/test_util.h"

namespace shardload::test {
namespace {

struct Run {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the CLI with `args` (shell-quoted by the caller).
Run Cli(const std::string& args, const TempDir& tmp) {
  std::string err_path = tmp / "stderr.txt";
  std::string cmd = std::string(SHARDLOAD_CLI) + " " + args + " 2>" + err_path;
  Run r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = ReadFile(err_path);
  return r;
}

rapidjson::Document LastJsonLine(const std::string& out) {
  std::string line = out;
  while (!line.empty() && line.back() == '\n') line.pop_back();
  line = line.substr(line.rfind('\n') == std::string::npos ? 0 : line.rfind('\n') + 1);
  rapidjson::Document doc;
  doc.Parse(line.c_str());
  REQUIRE_MESSAGE(!doc.HasParseError(), "not JSON: " << line);
  return doc;
}

// A generated ~8 MB checkpoint in 3+ shards, shared by the tests below.
const std::string& Generated() {
  static TempDir dir;
  static const std::string path = [] {
    std::string p = dir / "ckpt";
    Run r = Cli("generate " + p + " --size 8MB --max-shard-size 3MB", dir);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    return p;
  }();
  return path;
}

TEST_CASE("usage errors exit 2 and name the problem") {
  TempDir tmp;
  CHECK(Cli("", tmp).exit_code == 2);
  Run unknown = Cli("frobnicate", tmp);
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("frobnicate") != std::string::npos);
  Run bad_flag = Cli("inspect x --nope", tmp);
  CHECK(bad_flag.exit_code == 2);
  CHECK(bad_flag.err.find("--nope") != std::string::npos);
  CHECK(Cli("inspect", tmp).exit_code == 2);
  CHECK(Cli("generate " + (tmp / "g") + " --size lots", tmp).exit_code == 2);
}

TEST_CASE("--help works for every command") {
  TempDir tmp;
  for (std::string cmd : {"inspect", "generate"}) {
    Run r = Cli(cmd + " --help", tmp);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("usage: shardload " + cmd) != std::string::npos);
  }
  Run top = Cli("--help", tmp);
  CHECK(top.exit_code == 0);
  CHECK(top.out.find("inspect") != std::string::npos);
}

TEST_CASE("inspect --json describes a generated sharded checkpoint") {
  TempDir tmp;
  Run r = Cli("inspect " + Generated() + " --json --tensors", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(doc["valid"].GetBool());
  const auto& shards = doc["shards"].GetArray();
  CHECK(shards.Size() >= 3);
  std::uint64_t shard_tensors = 0, file_bytes = 0;
  for (const auto& s : shards) {
    shard_tensors += s["tensors"].GetUint64();
    file_bytes += s["file_size"].GetUint64();
    CHECK(std::filesystem::file_size(s["path"].GetString()) == s["file_size"].GetUint64());
    CHECK(std::string(s["metadata"]["format"].GetString()) == "pt");
  }
  const auto& tensors = doc["tensors"].GetArray();
  CHECK(tensors.Size() == doc["tensor_count"].GetUint64());
  CHECK(shard_tensors == tensors.Size());
  std::uint64_t sum = 0;
  for (const auto& t : tensors) {
    CHECK(std::string(t["dtype"].GetString()) == "BF16");
    std::uint64_t elems = 1;
    for (const auto& d : t["shape"].GetArray()) elems *= d.GetUint64();
    CHECK(t["bytes"].GetUint64() == 2 * elems);
    sum += t["bytes"].GetUint64();
  }
  CHECK(sum == doc["total_bytes"].GetUint64());
  CHECK(doc["dtypes"]["BF16"]["bytes"].GetUint64() == sum);
  CHECK(file_bytes > sum);
  CHECK(std::string(doc["index_metadata"]["total_size"].GetString()) == std::to_string(sum));
  CHECK(doc["warnings"].GetArray().Size() == 0);
}

TEST_CASE("inspect text output lists shards, dtypes and tensors") {
  TempDir tmp;
  Run r = Cli("inspect " + Generated() + " --tensors", tmp);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("model-00001-of-") != std::string::npos);
  CHECK(r.out.find("BF16") != std::string::npos);
  CHECK(r.out.find("model.layers.0.self_attn.q_proj.weight") != std::string::npos);
  CHECK(r.out.find("warnings    0") != std::string::npos);
}

TEST_CASE("inspect refuses a corrupt file with exit 3 naming file and rule") {
  TempDir tmp;
  std::string path = tmp / "bad.safetensors";
  WriteFile(path, RawSafetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})",
                                 std::string(4, '\0')));
  Run r = Cli("inspect " + path + " --json", tmp);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find(path) != std::string::npos);
  CHECK(r.err.find("`w`") != std::string::npos);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(std::string(doc["error"]["code_name"].GetString()) == "tensor_invalid_info");
  CHECK(std::string(doc["error"]["tensor"].GetString()) == "w");
}

TEST_CASE("inspect exit codes for layout and I/O errors") {
  TempDir tmp;
  CHECK(Cli("inspect " + (tmp / "does-not-exist"), tmp).exit_code == 5);
  std::filesystem::create_directories(tmp / "empty");
  CHECK(Cli("inspect " + (tmp / "empty"), tmp).exit_code == 4);
  std::string idx = tmp / "two";
  WriteFile(idx + "/a.safetensors.index.json", R"({"weight_map":{}})");
  WriteFile(idx + "/b.safetensors.index.json", R"({"weight_map":{}})");
  Run two = Cli("inspect " + idx, tmp);
  CHECK(two.exit_code == 4);
  CHECK(two.err.find("a.safetensors.index.json") != std::string::npos);
}

TEST_CASE("inspect warns about an unindexed tensor but succeeds") {
  TempDir tmp;
  std::string dir = tmp / "ckpt";
  WriteFile(dir + "/s.safetensors",
            RawSafetensors(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                           "xy"));
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"metadata":{"total_size":1},"weight_map":{"a":"s.safetensors"}})");
  Run r = Cli("inspect " + dir + " --json", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(doc["tensor_count"].GetUint64() == 1);
  REQUIRE(doc["warnings"].GetArray().Size() == 1);
  CHECK(std::string(doc["warnings"][0]["tensor"].GetString()) == "b");
  CHECK(r.err.find("warning") != std::string::npos);
}

}  // namespace
}  // namespace shardload::test
