// The C ABI against the C++ API: a rank's plan, its slices loaded into
// library memory and into caller buffers, byte for byte the same as
// Loader::Plan / Loader::Load with the same TensorParallel; plan kinds that
// this version cannot take are refused with a clear error.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "shardload/loader.h"
#include "shardload/shardload.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

const char kPlan[] = R"({"tp_plan_version": 1, "rules": [
  {"match": "l.*.col", "split": "col"}, {"match": "l.*.row", "split": "row"}]})";

// l.<i>.col [8, 6] F32 and l.<i>.row [6, 8] BF16 with distinct bytes.
void WriteFixture(const std::string& dir, std::vector<std::string>& storage) {
  std::vector<TensorData> tensors;
  storage.reserve(4);
  for (int i = 0; i < 2; ++i) {
    for (const char* kind : {"col", "row"}) {
      const bool col = std::strcmp(kind, "col") == 0;
      const std::size_t bytes = col ? 8 * 6 * 4 : 6 * 8 * 2;
      std::string data(bytes, '\0');
      for (std::size_t b = 0; b < bytes; ++b) data[b] = static_cast<char>(b * 7 + i * 31 + col);
      storage.push_back(std::move(data));
      TensorData t;
      t.name = "l." + std::to_string(i) + "." + kind;
      t.dtype = col ? DType::kF32 : DType::kBF16;
      t.shape = col ? std::vector<std::uint64_t>{8, 6} : std::vector<std::uint64_t>{6, 8};
      t.bytes = std::as_bytes(std::span(storage.back()));
      tensors.push_back(std::move(t));
    }
  }
  CheckpointWriteOptions options;
  options.max_shard_size = 300;  // several shards
  REQUIRE(WriteCheckpoint(dir, tensors, options).ok());
  std::ofstream(dir + "/plan.json") << kPlan;
}

std::string Message(shardload_error* err) {
  std::string out = err ? shardload_error_message(err) : "";
  shardload_error_free(err);
  return out;
}

TEST_CASE("C ABI: a rank's plan and slices equal the C++ API's") {
  TempDir dir;
  std::vector<std::string> storage;
  WriteFixture(dir.path(), storage);
  const std::string plan_path = dir / "plan.json";

  shardload_checkpoint* ckpt = nullptr;
  shardload_error* err = nullptr;
  REQUIRE_MESSAGE(shardload_open(dir.path().c_str(), nullptr, &ckpt, &err) == SHARDLOAD_OK,
                  Message(err));
  auto loader = Loader::Open(dir.path());
  REQUIRE(loader);
  for (unsigned world : {1u, 2u, 3u}) {
    for (unsigned rank = 0; rank < world; ++rank) {
      CAPTURE(world);
      CAPTURE(rank);
      const shardload_tp tp{rank, world, SHARDLOAD_PLAN_FILE, plan_path.c_str()};
      const TensorParallel cxx_tp{rank, world, PlanSource::File(plan_path)};

      shardload_rank_plan* plan = nullptr;
      REQUIRE_MESSAGE(shardload_plan_rank(ckpt, nullptr, &tp, &plan, &err) == SHARDLOAD_OK,
                      Message(err));
      auto cxx_plan = loader->Plan({}, cxx_tp);
      REQUIRE(cxx_plan);
      shardload_rank_totals totals{};
      shardload_rank_plan_totals(plan, &totals);
      CHECK(totals.bytes == cxx_plan->bytes);
      CHECK(totals.bytes_read == cxx_plan->bytes_read);
      CHECK(totals.read_ops == cxx_plan->read_ops);
      REQUIRE(shardload_rank_plan_count(plan) == cxx_plan->tensors.size());
      for (std::size_t i = 0; i < cxx_plan->tensors.size(); ++i) {
        shardload_planned_tensor t{};
        REQUIRE(shardload_rank_plan_tensor(plan, i, &t, nullptr) == SHARDLOAD_OK);
        CHECK(std::string(t.name) == cxx_plan->tensors[i].name);
        CHECK(std::vector<std::uint64_t>(t.shape, t.shape + t.ndim) == cxx_plan->tensors[i].shape);
        CHECK(t.bytes == cxx_plan->tensors[i].bytes);
      }
      shardload_rank_plan_free(plan);

      shardload_loaded* loaded = nullptr;
      REQUIRE_MESSAGE(shardload_load(ckpt, nullptr, &tp, &loaded, &err) == SHARDLOAD_OK,
                      Message(err));
      auto cxx = loader->Load({}, cxx_tp);
      REQUIRE(cxx);
      REQUIRE(shardload_loaded_count(loaded) == cxx->tensors().size());
      std::vector<std::string> buffers;
      std::vector<shardload_destination> dests;
      buffers.reserve(cxx->tensors().size());
      for (std::size_t i = 0; i < cxx->tensors().size(); ++i) {
        const LoadedTensor& want = cxx->tensors()[i];
        shardload_tensor got{};
        REQUIRE(shardload_loaded_at(loaded, i, &got, nullptr) == SHARDLOAD_OK);
        CHECK(std::string(got.name) == want.name);
        CHECK(std::vector<std::uint64_t>(got.shape, got.shape + got.ndim) == want.shape);
        REQUIRE(got.size == want.data.size());
        CHECK(std::memcmp(got.data, want.data.data(), got.size) == 0);
        buffers.emplace_back(want.data.size(), '\0');
        dests.push_back({want.name.c_str(), buffers.back().data(), want.data.size()});
      }
      shardload_loaded_free(loaded);

      shardload_stats stats{};
      REQUIRE_MESSAGE(shardload_load_into(ckpt, dests.data(), dests.size(), &tp, &stats, &err) ==
                          SHARDLOAD_OK,
                      Message(err));
      for (std::size_t i = 0; i < dests.size(); ++i) {
        CHECK(std::memcmp(buffers[i].data(), cxx->tensors()[i].data.data(), buffers[i].size()) ==
              0);
      }
    }
  }
  shardload_close(ckpt);
}

TEST_CASE("C ABI: plan kinds and arguments it refuses") {
  TempDir dir;
  std::vector<std::string> storage;
  WriteFixture(dir.path(), storage);
  shardload_checkpoint* ckpt = nullptr;
  REQUIRE(shardload_open(dir.path().c_str(), nullptr, &ckpt, nullptr) == SHARDLOAD_OK);
  shardload_loaded* loaded = nullptr;
  shardload_error* err = nullptr;

  // Plan JSON in memory: the same slices as the C++ API's PlanSource::Json.
  const shardload_tp json{1, 2, SHARDLOAD_PLAN_JSON, kPlan};
  REQUIRE_MESSAGE(shardload_load(ckpt, nullptr, &json, &loaded, &err) == SHARDLOAD_OK,
                  Message(err));
  auto loader = Loader::Open(dir.path());
  REQUIRE(loader);
  auto cxx = loader->Load({}, TensorParallel{1, 2, PlanSource::Json(kPlan)});
  REQUIRE(cxx);
  REQUIRE(shardload_loaded_count(loaded) == cxx->tensors().size());
  for (std::size_t i = 0; i < cxx->tensors().size(); ++i) {
    shardload_tensor t{};
    REQUIRE(shardload_loaded_at(loaded, i, &t, nullptr) == SHARDLOAD_OK);
    const LoadedTensor& want = cxx->tensors()[i];
    CHECK(std::string(t.name) == want.name);
    REQUIRE(t.size == want.data.size());
    CHECK(std::memcmp(t.data, want.data.data(), t.size) == 0);
  }
  shardload_loaded_free(loaded);
  loaded = nullptr;

  const shardload_tp bad_kind{0, 2, 99, nullptr};
  CHECK(shardload_load(ckpt, nullptr, &bad_kind, &loaded, nullptr) ==
        static_cast<int>(ErrorCode::kInvalidArgument));
  CHECK(loaded == nullptr);

  // A plan file that is not there: the engine's error, naming the file.
  const std::string missing = dir / "missing.json";
  const shardload_tp file{0, 2, SHARDLOAD_PLAN_FILE, missing.c_str()};
  CHECK(shardload_load(ckpt, nullptr, &file, &loaded, &err) != SHARDLOAD_OK);
  CHECK(std::string(shardload_error_file(err)) == missing);
  shardload_error_free(err);

  shardload_tensor_info info{};
  CHECK(shardload_tensor_at(ckpt, 99, &info, &err) ==
        static_cast<int>(ErrorCode::kInvalidArgument));
  shardload_error_free(err);
  CHECK(shardload_tensor_at(nullptr, 0, &info, nullptr) ==
        static_cast<int>(ErrorCode::kInvalidArgument));
  CHECK(shardload_error_code(nullptr) == SHARDLOAD_OK);
  CHECK(shardload_dtype_name(-1) == nullptr);
  CHECK(std::string(shardload_backend_name(SHARDLOAD_BACKEND_PREAD)) == "pread");
  shardload_close(ckpt);
}

}  // namespace
}  // namespace shardload::test
