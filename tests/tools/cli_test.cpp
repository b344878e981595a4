// End-to-end tests of the shardload CLI: exit codes, --help, inspect output
// (text and JSON) on generated and broken checkpoints.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "support/test_util.h"

namespace shardload::test {
namespace {

struct Run {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the CLI with `args` (shell-quoted by the caller), with `env` (e.g.
// "NAME=value ") prefixed to the command.
Run Cli(const std::string& args, const TempDir& tmp, const std::string& env = "") {
  std::string err_path = tmp / "stderr.txt";
  std::string cmd = env + std::string(SHARDLOAD_CLI) + " " + args + " 2>" + err_path;
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

TEST_CASE("--version names the MPI support; load --mpi takes no --rank/--world") {
  TempDir tmp;
  Run version = Cli("--version", tmp);
  REQUIRE(version.exit_code == 0);
  CHECK(version.out.rfind("shardload 0.", 0) == 0);
  Run json = Cli("load " + Generated() + " --json", tmp);
  REQUIRE_MESSAGE(json.exit_code == 0, json.err);
  rapidjson::Document doc = LastJsonLine(json.out);
  REQUIRE(doc.HasMember("mpi"));
  Run ranked = Cli("load " + Generated() + " --mpi --rank 0 --world 2 --plan hf", tmp);
  CHECK(ranked.exit_code == 2);
  CHECK(ranked.err.find("MPI_COMM_WORLD") != std::string::npos);
#if SHARDLOAD_TEST_MPI
  CHECK(version.out.find("\nmpi: Open MPI") != std::string::npos);
  CHECK(std::string(doc["mpi"].GetString()).rfind("Open MPI", 0) == 0);
#else
  CHECK(version.out.find("\nmpi: none") != std::string::npos);
  CHECK(doc["mpi"].IsNull());
  Run unsupported = Cli("load " + Generated() + " --mpi --plan hf", tmp);
  CHECK(unsupported.exit_code == 7);
  CHECK(unsupported.err.find("without MPI support") != std::string::npos);
#endif
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

TEST_CASE("inspect and load take a safetensors file whatever its name") {
  TempDir tmp;
  std::string data(16, '\x5a');
  std::string bytes =
      RawSafetensors(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", data);
  for (std::string name : {"model.st", "0123456789abcdef0123456789abcdef01234567"}) {
    CAPTURE(name);
    WriteFile(tmp / name, bytes);
    Run r = Cli("inspect " + (tmp / name) + " --json --tensors", tmp);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    rapidjson::Document doc = LastJsonLine(r.out);
    CHECK(doc["valid"].GetBool());
    CHECK(doc["tensor_count"].GetUint64() == 1);
    CHECK(std::string(doc["shards"][0]["path"].GetString()) == tmp / name);
    Run load = Cli("load " + (tmp / name) + " --json", tmp);
    REQUIRE_MESSAGE(load.exit_code == 0, load.err);
    CHECK(LastJsonLine(load.out)["bytes"].GetUint64() == 16);
  }
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
  // Default mode: auto (whether any byte went O_DIRECT depends on the cache).
  CHECK(std::string(doc["mode"].GetString()) == "auto");
  CHECK(doc["bytes_direct"].GetUint64() + doc["bytes_buffered"].GetUint64() ==
        doc["bytes_read"].GetUint64());
  CHECK(doc["direct"].GetBool() == (doc["bytes_direct"].GetUint64() > 0));
  CHECK(std::string(doc["mode_note"].GetString()).empty());
  CHECK(!doc.HasMember("steady_gb_per_s"));
}

TEST_CASE("load --buffered reads everything through the page cache; --direct excludes it") {
  TempDir tmp;
  Run r = Cli("load " + Generated() + " --json --buffered", tmp);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(std::string(doc["mode"].GetString()) == "buffered");
  CHECK(doc["bytes_direct"].GetUint64() == 0);
  CHECK(doc["bytes_buffered"].GetUint64() == doc["bytes_read"].GetUint64());
  CHECK(doc["bytes_read"].GetUint64() == doc["bytes"].GetUint64());
  CHECK(doc["direct"].GetBool() == false);
  Run both = Cli("load " + Generated() + " --json --buffered --direct", tmp);
  CHECK(both.exit_code == 2);
  CHECK(both.err.find("exclude each other") != std::string::npos);
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
  CHECK(std::string(doc["mode"].GetString()) == "direct");
  CHECK(doc["bytes_buffered"].GetUint64() == 0);
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

TEST_CASE("load --device cuda:0 through the fake CUDA runtime, device errors exit 7") {
  TempDir tmp;
  const std::string fake = std::string("SHARDLOAD_CUDART=") + FAKE_CUDART_PATH + " ";
  // No libcufile (a real one, on a GPU machine, must not meet the fake runtime).
  const std::string no_cufile = fake + "SHARDLOAD_CUFILE=/nonexistent/libcufile.so.0 ";
  Run r = Cli("load " + Generated() + " --device cuda:0 --staging 1MiB --gds --json", tmp,
              no_cufile);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(std::string(doc["device"].GetString()) == "cuda:0");
  CHECK(std::string(doc["transfer"].GetString()).find("pinned staging") != std::string::npos);
  CHECK(std::string(doc["transfer"].GetString()).find("GDS not used (libcufile not found") !=
        std::string::npos);
  CHECK(std::string(doc["memory"].GetString()).find("cudaMalloc") != std::string::npos);

  // With the fake libcufile and --direct, cuFile reads the aligned ranges.
  const std::string fake_gds = fake + "SHARDLOAD_CUFILE=" + FAKE_CUFILE_PATH + " ";
  Run gds = Cli("load " + Generated() + " --device cuda:0 --direct --gds --json", tmp, fake_gds);
  REQUIRE_MESSAGE(gds.exit_code == 0, gds.err);
  rapidjson::Document gdoc = LastJsonLine(gds.out);
  const std::string transfer = gdoc["transfer"].GetString();
  CHECK(transfer.rfind("GDS: ", 0) == 0);
  CHECK(transfer.find(" cuFileRead of ") != std::string::npos);
  CHECK(gdoc["bytes"].GetUint64() == doc["bytes"].GetUint64());
  Run buffered =
      Cli("load " + Generated() + " --device cuda:0 --buffered --gds --json", tmp, fake_gds);
  REQUIRE_MESSAGE(buffered.exit_code == 0, buffered.err);
  CHECK(std::string(LastJsonLine(buffered.out)["transfer"].GetString())
            .find("GDS not used (--buffered") != std::string::npos);

  Run missing = Cli("load " + Generated() + " --device cuda:0 --json", tmp);
  if (std::getenv("SHARDLOAD_CUDART") == nullptr) {
    // No CUDA device on a test machine, or no libcudart at all: unsupported.
    if (missing.exit_code == 0) MESSAGE("a real CUDA device is present; skipped");
    if (missing.exit_code != 0) {
      CHECK(missing.exit_code == 7);
      CHECK(std::string(LastJsonLine(missing.out)["error"]["code_name"].GetString()) ==
            "unsupported");
    }
  }
  CHECK(Cli("load " + Generated() + " --device gpu", tmp).exit_code == 2);
  CHECK(Cli("load " + Generated() + " --device cuda:0 --save " + (tmp / "out"), tmp).exit_code ==
        2);
}

}  // namespace
}  // namespace shardload::test

// --- tensor parallel: load --rank/--world/--plan, plan, split ---------------

namespace shardload::test {
namespace {

TEST_CASE("plan --json predicts what load --rank reads, buffered and --direct") {
  TempDir tmp;
  // Forced modes: what auto mode plans depends on the page cache, which may
  // change between the plan and the load.
  for (std::string direct : {" --buffered", " --direct"}) {
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
      if (direct == " --buffered") CHECK(rp["bytes_read"].GetUint64() >= rp["bytes"].GetUint64());
    }
  }
}

TEST_CASE("--max-over-read and --read-strategy on plan and load") {
  TempDir tmp;
  auto plan = [&](const std::string& flags) {
    // Buffered: an auto plan follows the page cache (O_DIRECT reads of cold
    // files round out to their alignment), and these counts mean exact reads.
    Run p = Cli("plan " + Generated() + " --world 4 --rank 1 --plan hf --json --buffered " + flags,
                tmp);
    REQUIRE_MESSAGE(p.exit_code == 0, p.err);
    rapidjson::Document d = LastJsonLine(p.out);
    return std::pair{d["ranks"][0]["bytes"].GetUint64(), d["ranks"][0]["bytes_read"].GetUint64()};
  };
  auto [bytes, exact_read] = plan("--max-over-read 1");
  CHECK(exact_read == bytes);
  CHECK(plan("--read-strategy exact").second == bytes);
  CHECK(plan("--read-strategy staged").second > bytes);
  auto [_, capped] = plan("--max-over-read 1.2");
  CHECK(capped >= bytes);
  CHECK(static_cast<double>(capped) <= 1.2 * static_cast<double>(bytes));
  Run l = Cli("load " + Generated() + " --world 4 --rank 1 --plan hf --json --read-strategy staged",
              tmp);
  REQUIRE_MESSAGE(l.exit_code == 0, l.err);
  CHECK(LastJsonLine(l.out)["bytes"].GetUint64() == bytes);
  CHECK(Cli("plan " + Generated() + " --world 4 --plan hf --max-over-read 0.5", tmp).exit_code == 2);
  CHECK(Cli("load " + Generated() + " --read-strategy fast", tmp).exit_code == 2);

  // Mapped (buffered: a plan in auto mode follows the page cache): the
  // row-split tensors report "mapped", a few mappings replace the per-row
  // reads, and the load reads and counts what the plan says.
  const std::string mapped = " --world 4 --rank 1 --plan hf --json --buffered --read-strategy ";
  Run pm = Cli("plan " + Generated() + mapped + "mapped", tmp);
  Run pe = Cli("plan " + Generated() + mapped + "exact", tmp);
  REQUIRE_MESSAGE(pm.exit_code == 0, pm.err);
  REQUIRE_MESSAGE(pe.exit_code == 0, pe.err);
  rapidjson::Document dm = LastJsonLine(pm.out), de = LastJsonLine(pe.out);
  const rapidjson::Value& rm = dm["ranks"][0];
  bool any_mapped = false;
  for (const rapidjson::Value& t : rm["tensors"].GetArray()) {
    any_mapped |= std::string(t["strategy"].GetString()) == "mapped";
  }
  CHECK(any_mapped);
  CHECK(rm["bytes_read"].GetUint64() > bytes);
  CHECK(rm["read_ops"].GetUint64() < de["ranks"][0]["read_ops"].GetUint64());
  Run lm = Cli("load " + Generated() + mapped + "mapped", tmp);
  REQUIRE_MESSAGE(lm.exit_code == 0, lm.err);
  rapidjson::Document dl = LastJsonLine(lm.out);
  CHECK(dl["bytes"].GetUint64() == bytes);
  CHECK(dl["bytes_read"].GetUint64() == rm["bytes_read"].GetUint64());
  CHECK(dl["read_ops"].GetUint64() == rm["read_ops"].GetUint64());
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

TEST_CASE("plan --json: every rank without --rank, per-tensor strategy and reads") {
  TempDir tmp;
  Run all = Cli("plan " + Generated() + " --world 4 --plan hf --json", tmp);
  REQUIRE_MESSAGE(all.exit_code == 0, all.err);
  rapidjson::Document every = LastJsonLine(all.out);
  REQUIRE(every["ranks"].GetArray().Size() == 4);
  for (unsigned r = 0; r < 4; ++r) {
    const rapidjson::Value& rp = every["ranks"][r];
    CHECK(rp["rank"].GetUint() == r);
    std::uint64_t ops = 0, read = 0;
    for (const rapidjson::Value& t : rp["tensors"].GetArray()) {
      std::string strategy = t["strategy"].GetString();
      CHECK((strategy == "exact" || strategy == "staged" || strategy == "mixed" ||
             strategy == "mapped"));
      ops += t["read_ops"].GetUint64();
      read += t["bytes_read"].GetUint64();
    }
    CHECK(ops == rp["read_ops"].GetUint64());
    CHECK(read == rp["bytes_read"].GetUint64());
    Run one = Cli("plan " + Generated() + " --world 4 --plan hf --json --rank " + std::to_string(r), tmp);
    REQUIRE_MESSAGE(one.exit_code == 0, one.err);
    rapidjson::Document single = LastJsonLine(one.out);
    CHECK(single["ranks"][0] == rp);
  }
}

TEST_CASE("--plan FILE: a plan or a config.json told apart by content; a FIFO does not hang") {
  TempDir tmp;
  // The checkpoint's config.json under a name that says nothing.
  WriteFile(tmp / "settings", ReadFile(Generated() + "/config.json"));
  Run hf = Cli("plan " + Generated() + " --world 2 --rank 1 --plan hf --json", tmp);
  Run by_content = Cli("plan " + Generated() + " --world 2 --rank 1 --json --plan " + (tmp / "settings"), tmp);
  REQUIRE_MESSAGE(hf.exit_code == 0, hf.err);
  REQUIRE_MESSAGE(by_content.exit_code == 0, by_content.err);
  CHECK(LastJsonLine(hf.out)["ranks"] == LastJsonLine(by_content.out)["ranks"]);
  CHECK(std::string(LastJsonLine(by_content.out)["plan"].GetString()) == tmp / "settings");
  // Our plan in a file named config.json is still our plan.
  ::mkdir((tmp / "d").c_str(), 0700);
  WriteFile(tmp / "d/config.json", R"({"tp_plan_version": 1, "rules": [{"match": "**", "split": "nope"}]})");
  Run ours = Cli("plan " + Generated() + " --world 2 --plan " + (tmp / "d/config.json"), tmp);
  CHECK(ours.exit_code == 6);
  CHECK(ours.err.find("tp_bad_rule") != std::string::npos);
  // A FIFO nobody writes to: refused at once (exit 4, not a regular file).
  REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  std::string cmd = "timeout 20 " + std::string(SHARDLOAD_CLI) + " plan " + Generated() +
                    " --world 2 --plan " + (tmp / "fifo") + " 2>&1";
  Run fifo;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) fifo.err.append(buf.data(), n);
  int status = ::pclose(pipe);
  fifo.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  CHECK(fifo.exit_code != 124);  // timeout(1): it hung
  CHECK(fifo.exit_code != 0);
  CHECK(fifo.err.find("not_regular_file") != std::string::npos);
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
  // The copied files are cached: hashed from a mapping, unless --copy.
  for (std::string copy : {"", " --copy"}) {
    CAPTURE(copy);
    Run mapped = Cli("verify " + dir + " --manifest " + tmp / "manifest.sha256" + copy + " --json",
                     tmp);
    REQUIRE_MESSAGE(mapped.exit_code == 0, mapped.err);
    rapidjson::Document doc = LastJsonLine(mapped.out);
    CHECK(doc["ok"].GetBool());
    CHECK(doc["bytes_mapped"].GetUint64() == (copy.empty() ? doc["bytes"].GetUint64() : 0));
  }
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

// Field FIELD (a Python expression over the decoded object `d`) of the JSON
// line in `json_file`, decoded by Python's json module and turned back into
// bytes by os.fsencode (surrogateescape): the independent oracle of the
// lossless escaping (docs/cli.md "JSON output"). nullopt without python3.
std::optional<std::string> PythonField(const std::string& json_file, const std::string& field,
                                       const TempDir& tmp) {
  if (std::system("python3 -c '' 2>/dev/null") != 0) return std::nullopt;
  const std::string script = tmp / "field.py";
  WriteFile(script, "import json, os, sys\nd = json.loads(open(sys.argv[1], 'rb').read())\n"
                    "sys.stdout.buffer.write(os.fsencode(" + field + "))\n");
  FILE* pipe = ::popen(("python3 " + script + " " + json_file).c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  REQUIRE(::pclose(pipe) == 0);
  return out;
}

// The last line of `out` (written to tmp/line.json), checked to parse and to
// be valid UTF-8 (iconv, an independent validator).
std::string LastLineUtf8(const std::string& out, const TempDir& tmp) {
  rapidjson::Document parsed = LastJsonLine(out);  // parses at all
  std::string line = out.substr(0, out.size() - 1);
  line = line.substr(line.rfind('\n') == std::string::npos ? 0 : line.rfind('\n') + 1);
  WriteFile(tmp / "line.json", line);
  CHECK(std::system(("iconv -f UTF-8 -t UTF-8 " + tmp / "line.json" + " >/dev/null 2>&1").c_str()) ==
        0);
  return line;
}

TEST_CASE("--json output stays JSON for file names that are not UTF-8: \\udcXX per byte") {
  TempDir tmp;
  // Invalid bytes: a lone 0xff, then a valid é, then a truncated 3-byte sequence.
  const std::string raw_name = "bad\xff" "name\xc3\xa9\xe2\x82.safetensors";
  const std::string escaped = "bad\\udcffname\xc3\xa9\\udce2\\udc82.safetensors";
  const std::string dir = tmp / "ckpt";
  const std::string path = dir + "/" + raw_name;
  WriteFile(path, RawSafetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                                 "abcd"));
  const std::string quoted = "'" + path + "'";

  Run inspect = Cli("inspect " + quoted + " --json", tmp);
  REQUIRE_MESSAGE(inspect.exit_code == 0, inspect.err);
  std::string line = LastLineUtf8(inspect.out, tmp);
  CHECK(line.find("\"" + dir + "/" + escaped + "\"") != std::string::npos);
  if (auto back = PythonField(tmp / "line.json", "d['path']", tmp)) CHECK(*back == path);

  Run verify = Cli("verify " + quoted + " --json", tmp);
  REQUIRE_MESSAGE(verify.exit_code == 0, verify.err);
  line = LastLineUtf8(verify.out, tmp);
  CHECK(line.find("\"" + escaped + "\"") != std::string::npos);
  if (auto back = PythonField(tmp / "line.json", "d['files'][0]['name']", tmp)) {
    CHECK(*back == raw_name);
  }

  // A tensor name with raw invalid bytes: the header is refused (headers are
  // UTF-8 JSON); the error line names the file, escaped the same way.
  WriteFile(path, RawSafetensors("{\"w\xfe\":{\"dtype\":\"U8\",\"shape\":[4],"
                                 "\"data_offsets\":[0,4]}}", "abcd"));
  Run load = Cli("load " + quoted + " --json", tmp);
  CHECK(load.exit_code == 3);
  line = LastLineUtf8(load.out, tmp);
  CHECK(line.find("invalid_utf8") != std::string::npos);
  CHECK(line.find(escaped) != std::string::npos);
  if (auto back = PythonField(tmp / "line.json", "d['error']['path']", tmp)) CHECK(*back == path);
}

TEST_CASE("generate --size: the tensor bytes are at most the size and within one layer of it") {
  TempDir tmp;
  // 64 MB once wrote 88 MB (the small model's embeddings alone are 65.5 MB).
  for (std::uint64_t size : {64'000'000ULL, 20'000'000ULL}) {
    CAPTURE(size);
    const std::string out = tmp / ("g" + std::to_string(size));
    Run r = Cli("generate " + out + " --size " + std::to_string(size) + " --json", tmp);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const std::uint64_t bytes = LastJsonLine(r.out)["bytes"].GetUint64();
    CHECK(bytes <= size);
    CHECK(bytes > size - 1'400'000);  // one toy layer: 1,384,960 bytes
    std::uint64_t on_disk = 0;
    for (const auto& e : std::filesystem::directory_iterator(out)) {
      if (e.path().extension() == ".safetensors") on_disk += e.file_size();
    }
    CHECK(on_disk >= bytes);
    CHECK(on_disk <= size + 100'000);  // plus the headers
    std::filesystem::remove_all(out);
  }
}

TEST_CASE("--chunk-size below 4KiB is a usage error saying the limit") {
  TempDir tmp;
  for (std::string cmd : {"load " + Generated(), "plan " + Generated() + " --world 2 --plan hf"}) {
    CAPTURE(cmd);
    Run small = Cli(cmd + " --chunk-size 1", tmp);
    CHECK(small.exit_code == 2);
    CHECK(small.err.find("at least 4KiB") != std::string::npos);
    CHECK(Cli(cmd + " --chunk-size 4095", tmp).exit_code == 2);
    Run least = Cli(cmd + " --chunk-size 4KiB", tmp);
    CHECK_MESSAGE(least.exit_code == 0, least.err);
  }
}

TEST_CASE("a plan error quoting a 10 MB key stays short on stderr and in --json") {
  TempDir tmp;
  const std::string huge(10 << 20, 'k');
  WriteFile(tmp / "plan.json", R"({"tp_plan_version": 1, "rules": [], ")" + huge + "\": 1}");
  Run r = Cli("plan " + Generated() + " --world 2 --plan " + tmp / "plan.json" + " --json", tmp);
  CHECK(r.exit_code == 6);
  CHECK(r.err.find("... (10485760 bytes)") != std::string::npos);
  CHECK(r.err.size() < 2048);
  CHECK(r.out.size() < 4096);
  rapidjson::Document doc = LastJsonLine(r.out);
  CHECK(std::string(doc["error"]["code_name"].GetString()) == "tp_plan_json");
  // pad_to 2^63: the plan's error (exit 6, tp_bad_rule), not a header's (3).
  WriteFile(tmp / "pad.json", R"({"tp_plan_version": 1, "rules": [{"match": "model.embed_tokens",
      "split": "vocab", "pad_to": 9223372036854775808}]})");
  Run pad = Cli("plan " + Generated() + " --world 2 --plan " + tmp / "pad.json" + " --json", tmp);
  CHECK(pad.exit_code == 6);
  CHECK(pad.err.find("tp_bad_rule") != std::string::npos);
}

}  // namespace
}  // namespace shardload::test
