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
  for (std::string cmd : {"inspect", "generate", "load"}) {
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

TEST_CASE("load --json reports the contract fields") {
  TempDir tmp;
  Run r = Cli("load " + Generated() + " --json", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  Run info = Cli("inspect " + Generated() + " --json", tmp);
  rapidjson::Document ckpt = LastJsonLine(info.out);
  CHECK(doc["tensors"].GetUint64() == ckpt["tensor_count"].GetUint64());
  CHECK(doc["bytes"].GetUint64() == ckpt["total_bytes"].GetUint64());
  CHECK(doc["bytes_read"].GetUint64() >= doc["bytes"].GetUint64());
  double seconds = doc["seconds"].GetDouble();
  CHECK(seconds > 0);
  CHECK(doc["gb_per_s"].GetDouble() ==
        doctest::Approx(doc["bytes"].GetDouble() / seconds / 1e9).epsilon(0.01));
  std::string backend = doc["backend"].GetString();
  CHECK((backend == "io_uring" || backend == "pread"));
  CHECK(doc["threads"].GetUint() >= 1);
  CHECK(doc["direct"].GetBool() == false);
  CHECK(!doc.HasMember("steady_gb_per_s"));
}

TEST_CASE("load --repeat reports steady_gb_per_s; flags reach the engine") {
  TempDir tmp;
  Run r = Cli("load " + Generated() + " --json --repeat 3 --threads 1 --direct --backend pread", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(doc["steady_gb_per_s"].GetDouble() > 0);
  CHECK(doc["reload_gb_per_s"].GetArray().Size() == 2);
  CHECK(std::string(doc["backend"].GetString()) == "pread");
  CHECK(doc["threads"].GetUint() == 1);
  CHECK(doc["direct"].GetBool());
}

TEST_CASE("load --select picks tensors; errors have their exit codes") {
  TempDir tmp;
  Run r = Cli("load " + Generated() + " --json --select 'model.layers.*.mlp.**'", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(doc["tensors"].GetUint64() % 3 == 0);
  CHECK(doc["tensors"].GetUint64() > 0);
  Run none = Cli("load " + Generated() + " --select 'no.such.*' --json", tmp);
  CHECK(none.exit_code == 6);
  CHECK(none.err.find("no.such.*") != std::string::npos);
  CHECK(Cli("load " + Generated() + " --threads 0", tmp).exit_code == 2);
  CHECK(Cli("load " + Generated() + " --backend mmap", tmp).exit_code == 2);
  CHECK(Cli("load " + Generated() + " --chunk-size 1X", tmp).exit_code == 2);
}

TEST_CASE("load refuses a shard whose data is cut short, naming the shard (exit 3)") {
  TempDir tmp;
  std::string dir = tmp / "ckpt";
  std::string data(4096, 'x');
  // A valid header whose data the file does not hold: the header check
  // refuses it before any read (exit 3), naming file and rule.
  std::string cut = RawSafetensors(R"({"t":{"dtype":"U8","shape":[4096],"data_offsets":[0,4096]}})",
                                   data.substr(0, 100));
  WriteFile(dir + "/a.safetensors", cut);
  Run r = Cli("load " + dir, tmp);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("a.safetensors") != std::string::npos);
}

}  // namespace
}  // namespace shardload::test

// --- tensor parallel: load --rank/--world/--plan, plan, split ---------------

namespace shardload::test {
namespace {

TEST_CASE("plan --json predicts what load --rank reads, buffered and --direct") {
  TempDir tmp;
  for (std::string direct : {"", " --direct"}) {
    Run p = Cli("plan " + Generated() + " --world 4 --plan hf --json" + direct, tmp);
    REQUIRE_MESSAGE(p.exit_code == 0, p.err);
    rapidjson::Document plan = LastJsonLine(p.out);
    CHECK(plan["world"].GetUint() == 4);
    REQUIRE(plan["ranks"].GetArray().Size() == 4);
    for (unsigned r = 0; r < 4; ++r) {
      const rapidjson::Value& rp = plan["ranks"][r];
      Run l = Cli("load " + Generated() + " --rank " + std::to_string(r) +
                      " --world 4 --plan hf --json" + direct, tmp);
      REQUIRE_MESSAGE(l.exit_code == 0, l.err);
      rapidjson::Document load = LastJsonLine(l.out);
      CHECK(load["rank"].GetUint() == r);
      CHECK(load["world"].GetUint() == 4);
      CHECK(std::string(load["plan"].GetString()) == "hf");
      CHECK(load["bytes"].GetUint64() == rp["bytes"].GetUint64());
      CHECK(load["read_ops"].GetUint64() == rp["read_ops"].GetUint64());
      CHECK(load["bytes_read"].GetUint64() <= rp["bytes_read"].GetUint64());
      CHECK(load["tensors"].GetUint64() == rp["num_tensors"].GetUint64());
      if (direct.empty()) CHECK(rp["bytes_read"].GetUint64() == rp["bytes"].GetUint64());
    }
  }
}

TEST_CASE("load takes the rank and world from RANK and WORLD_SIZE") {
  TempDir tmp;
  Run r = Cli("load " + Generated() + " --plan hf --json", tmp);  // no world: usage
  CHECK(r.exit_code == 2);
  std::string cmd = "env RANK=1 WORLD_SIZE=2 " + std::string(SHARDLOAD_CLI) + " load " +
                    Generated() + " --plan hf --json";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  REQUIRE(::pclose(pipe) == 0);
  rapidjson::Document doc = LastJsonLine(out);
  CHECK(doc["rank"].GetUint() == 1);
  CHECK(doc["world"].GetUint() == 2);
}

TEST_CASE("tensor-parallel usage and plan errors have their exit codes") {
  TempDir tmp;
  CHECK(Cli("load " + Generated() + " --rank 1", tmp).exit_code == 2);
  CHECK(Cli("load " + Generated() + " --rank 2 --world 2 --plan hf", tmp).exit_code == 2);
  CHECK(Cli("plan " + Generated() + " --plan hf", tmp).exit_code == 2);
  CHECK(Cli("split " + Generated() + " --world 2 --plan hf", tmp).exit_code == 2);
  Run bad = Cli("plan " + Generated() + " --world 2 --plan " + (tmp / "none.json"), tmp);
  CHECK(bad.exit_code == 5);
  WriteFile(tmp / "bad.json", R"({"tp_plan_version": 1, "rules": [{"match": "**", "split": "nope"}]})");
  Run rule = Cli("load " + Generated() + " --rank 0 --world 2 --plan " + (tmp / "bad.json"), tmp);
  CHECK(rule.exit_code == 6);
  CHECK(rule.err.find("tp_bad_rule") != std::string::npos);
}

TEST_CASE("split writes rank-<r>/ checkpoints that inspect accepts") {
  TempDir tmp;
  std::string out = tmp / "split";
  Run s = Cli("split " + Generated() + " --world 2 --plan hf --out " + out + " --json", tmp);
  REQUIRE_MESSAGE(s.exit_code == 0, s.err);
  rapidjson::Document doc = LastJsonLine(s.out);
  REQUIRE(doc["ranks"].GetArray().Size() == 2);
  for (unsigned r = 0; r < 2; ++r) {
    Run info = Cli("inspect " + out + "/rank-" + std::to_string(r) + " --json", tmp);
    REQUIRE_MESSAGE(info.exit_code == 0, info.err);
    rapidjson::Document ckpt = LastJsonLine(info.out);
    CHECK(ckpt["total_bytes"].GetUint64() == doc["ranks"][r]["bytes"].GetUint64());
  }
}

}  // namespace
}  // namespace shardload::test

// --- verify, load --verify, load --dtype ----------------------------------------

namespace shardload::test {
namespace {

// A copy of the generated checkpoint (tests below corrupt it) and its
// manifest written by `sha256sum` (the oracle).
std::string CopyWithManifest(const TempDir& tmp) {
  std::string dir = tmp / "copy";
  std::filesystem::copy(Generated(), dir);
  Run r = Cli("verify " + dir + " >/dev/null; cd " + dir +
                  " && sha256sum *.safetensors > ../manifest.sha256",
              tmp);
  REQUIRE(r.exit_code == 0);
  return dir;
}

TEST_CASE("verify prints sha256sum lines, and with a manifest one verdict per file") {
  TempDir tmp;
  std::string dir = CopyWithManifest(tmp);
  Run listed = Cli("verify " + dir, tmp);
  REQUIRE_MESSAGE(listed.exit_code == 0, listed.err);
  CHECK(listed.out == ReadFile(tmp / "manifest.sha256"));
  Run ok = Cli("verify " + dir + " --manifest " + tmp / "manifest.sha256", tmp);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("OK       model-00001-of-") == 0);
  CHECK(ok.out.find("MISMATCH") == std::string::npos);
  // The JSON form of the manifest works too.
  WriteFile(tmp / "m.json", "{\"model-00001-of-00003.safetensors\": \"" + std::string(64, '0') +
                                "\"}");
  Run json = Cli("verify " + dir + " --manifest " + tmp / "m.json" + " --json", tmp);
  CHECK(json.exit_code == 1);
  rapidjson::Document doc = LastJsonLine(json.out);
  CHECK_FALSE(doc["ok"].GetBool());
  CHECK(std::string(doc["files"][0]["status"].GetString()) == "MISMATCH");
  CHECK(std::string(doc["files"][1]["status"].GetString()) == "EXTRA");
}

TEST_CASE("verify and load --verify fail on a flipped byte, naming the file") {
  TempDir tmp;
  std::string dir = CopyWithManifest(tmp);
  std::string victim = dir + "/model-00002-of-00003.safetensors";
  std::string bytes = ReadFile(victim);
  bytes[bytes.size() / 2] ^= 1;
  WriteFile(victim, bytes);
  Run v = Cli("verify " + dir + " --manifest " + tmp / "manifest.sha256", tmp);
  CHECK(v.exit_code == 1);
  CHECK(v.out.find("MISMATCH model-00002-of-00003.safetensors") != std::string::npos);
  CHECK(v.out.find("OK       model-00001-of-00003.safetensors") != std::string::npos);
  Run load = Cli("load " + dir + " --verify " + tmp / "manifest.sha256", tmp);
  CHECK(load.exit_code == 1);
  CHECK(load.err.find(victim) != std::string::npos);
  CHECK(load.err.find("checksum_mismatch") != std::string::npos);
  // Missing and extra files.
  WriteFile(tmp / "more.sha256", ReadFile(tmp / "manifest.sha256") + std::string(64, 'a') +
                                     "  tokenizer.json\n");
  Run missing = Cli("verify " + dir + " --manifest " + tmp / "more.sha256", tmp);
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("MISSING  tokenizer.json") != std::string::npos);
  // A bad manifest: exit 6 naming it.
  WriteFile(tmp / "bad.sha256", "not a manifest\n");
  Run bad = Cli("verify " + dir + " --manifest " + tmp / "bad.sha256", tmp);
  CHECK(bad.exit_code == 6);
  CHECK(bad.err.find("bad.sha256") != std::string::npos);
}

TEST_CASE("load --verify and --dtype report through --json") {
  TempDir tmp;
  std::string dir = CopyWithManifest(tmp);
  Run r = Cli("load " + dir + " --verify " + tmp / "manifest.sha256" + " --dtype F32 --json", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  Run plain = Cli("load " + dir + " --json", tmp);
  rapidjson::Document base = LastJsonLine(plain.out);
  CHECK(doc["bytes"].GetUint64() == 2 * base["bytes"].GetUint64());  // BF16 -> F32
  CHECK(std::string(doc["verified"].GetString()).find("3 by reading them again") !=
        std::string::npos);
  CHECK(Cli("load " + dir + " --dtype F8_E4M3", tmp).exit_code == 2);
}

}  // namespace
}  // namespace shardload::test
