// Converted loads end to end (LoadOptions::dtype): a checkpoint of several
// shards with BF16, F16, F32, F8_E4M3, F8_E5M2, I64 and U8 tensors (random
// bits, so NaNs, infinities and subnormals occur) loaded as F32, F16 and BF16,
// whole, by selection and as tensor-parallel rank slices (row, col and vocab
// splits, every rank of W = 1..4). Oracle: the same tensors loaded without
// conversion (the unconverted load is itself checked against pread by the
// io and loader suites), converted element by element with ConvertElements,
// whose every pair is checked against numpy by test_convert.py.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

struct Spec {
  std::string name;
  DType dtype;
  std::vector<std::uint64_t> shape;
};

const std::vector<Spec> kSpecs = {
    {"m.a.weight", DType::kBF16, {64, 96}},   {"m.b.weight", DType::kF16, {40, 33}},
    {"m.c.weight", DType::kF32, {17, 64}},    {"m.d.weight", DType::kF8E4M3, {32, 48}},
    {"m.e.weight", DType::kF8E5M2, {16, 80}}, {"m.ids", DType::kI64, {5, 3}},
    {"m.mask", DType::kU8, {11}},             {"m.embed.weight", DType::kBF16, {10, 8}},
    {"m.big", DType::kBF16, {512, 1024}},     {"m.scalar", DType::kF32, {}},
    {"m.empty", DType::kF16, {0, 4}},
};

const char kPlan[] = R"({"tp_plan_version": 1, "uneven": "chunk", "rules": [
  {"match": "m.a.weight", "split": "col"}, {"match": "m.b.weight", "split": "row"},
  {"match": "m.d.weight", "split": "col"}, {"match": "m.e.weight", "split": "row"},
  {"match": "m.embed.weight", "split": "vocab", "pad_to": 4},
  {"match": "m.big", "split": "col"}]})";

std::uint64_t Elements(const Spec& s) {
  std::uint64_t n = 1;
  for (auto d : s.shape) n *= d;
  return n;
}

class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(test::Seed());
    data_.resize(kSpecs.size());
    std::vector<TensorData> tensors;
    for (std::size_t i = 0; i < kSpecs.size(); ++i) {
      data_[i].resize(Elements(kSpecs[i]) * DTypeBits(kSpecs[i].dtype) / 8);
      for (auto& b : data_[i]) b = static_cast<std::byte>(rng());
      tensors.push_back(TensorData{kSpecs[i].name, kSpecs[i].dtype, kSpecs[i].shape, data_[i], {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 300'000;  // several shards
    REQUIRE(WriteCheckpoint(dir_.path(), tensors, options));
    test::WriteFile(dir_ / "plan.json", kPlan);
  }
  const std::string& path() const { return dir_.path(); }
  std::string plan() const { return dir_ / "plan.json"; }

 private:
  test::TempDir dir_;
  std::vector<std::vector<std::byte>> data_;
};

Result<LoadedCheckpoint> LoadWith(const Fixture& f, std::optional<DType> dtype,
                                  const Selection& selection, const TensorParallel& tp) {
  LoadOptions options;
  options.dtype = dtype;
  options.threads = 3;
  options.chunk_size = 4096;  // many staging rounds, split runs
  auto loader = Loader::Open(f.path(), options);
  if (!loader) return std::move(loader).error();
  return loader->Load(selection, tp);
}

// Every converted tensor equals the plain tensor converted element by element.
void CheckConverted(const LoadedCheckpoint& plain, const LoadedCheckpoint& converted,
                    DType target) {
  REQUIRE(plain.tensors().size() == converted.tensors().size());
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < plain.tensors().size(); ++i) {
    const LoadedTensor& p = plain.tensors()[i];
    const LoadedTensor& c = converted.tensors()[i];
    CAPTURE(p.name);
    REQUIRE(p.name == c.name);
    CHECK(p.shape == c.shape);
    DType want = IsConvertibleSource(p.dtype) ? target : p.dtype;
    CHECK(c.dtype == want);
    std::uint64_t n = p.data.size() / (DTypeBits(p.dtype) / 8);
    REQUIRE(c.data.size() == n * DTypeBits(want) / 8);
    std::vector<std::byte> expect(c.data.size());
    ConvertElements(p.dtype, want, p.data.data(), expect.data(), n);
    CHECK((expect.empty() || std::memcmp(expect.data(), c.data.data(), expect.size()) == 0));
    bytes += c.data.size();
  }
  CHECK(converted.stats().bytes <= bytes);  // vocab padding is not delivered
  CHECK(converted.stats().bytes > 0);
}

TEST_CASE("a whole load converts every floating-point tensor, others untouched") {
  Fixture f;
  auto plain = LoadWith(f, std::nullopt, {}, {});
  REQUIRE_MESSAGE(plain, test::ErrorText(plain));
  for (DType target : {DType::kF32, DType::kF16, DType::kBF16}) {
    CAPTURE(DTypeName(target));
    auto converted = LoadWith(f, target, {}, {});
    REQUIRE_MESSAGE(converted, test::ErrorText(converted));
    CheckConverted(*plain, *converted, target);
  }
}

TEST_CASE("a converted load reports progress: converted bytes, ending at the total") {
  Fixture f;
  LoadOptions options;
  options.dtype = DType::kF32;
  options.threads = 2;
  options.chunk_size = 4096;
  std::mutex mu;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
  options.progress = [&](std::uint64_t done, std::uint64_t total) {
    std::lock_guard<std::mutex> lock(mu);
    calls.emplace_back(done, total);
  };
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader);
  auto converted = loader->Load();
  REQUIRE_MESSAGE(converted, test::ErrorText(converted));
  REQUIRE_FALSE(calls.empty());
  std::uint64_t most = 0;
  for (const auto& [done, total] : calls) {
    CHECK(total == converted->stats().bytes);
    CHECK(done <= total);
    most = std::max(most, done);
  }
  CHECK(most == converted->stats().bytes);
}

TEST_CASE("a selection is converted") {
  Fixture f;
  Selection selection;
  selection.globs = {"m.*.weight"};
  auto plain = LoadWith(f, std::nullopt, selection, {});
  REQUIRE(plain);
  auto converted = LoadWith(f, DType::kF32, selection, {});
  REQUIRE_MESSAGE(converted, test::ErrorText(converted));
  CheckConverted(*plain, *converted, DType::kF32);
}

TEST_CASE("rank slices are converted: row, col and vocab splits, every rank") {
  Fixture f;
  for (unsigned world = 1; world <= 4; ++world) {
    for (unsigned rank = 0; rank < world; ++rank) {
      CAPTURE(world);
      CAPTURE(rank);
      TensorParallel tp{rank, world, PlanSource::File(f.plan())};
      auto plain = LoadWith(f, std::nullopt, {}, tp);
      REQUIRE_MESSAGE(plain, test::ErrorText(plain));
      for (DType target : {DType::kF32, DType::kBF16}) {
        auto converted = LoadWith(f, target, {}, tp);
        REQUIRE_MESSAGE(converted, test::ErrorText(converted));
        CheckConverted(*plain, *converted, target);
      }
    }
  }
}

TEST_CASE("bad dtype requests are refused") {
  Fixture f;
  LoadOptions options;
  options.dtype = DType::kI32;
  auto loader = Loader::Open(f.path(), options);
  REQUIRE_FALSE(loader);
  CHECK(loader.error().code == ErrorCode::kInvalidArgument);
  options.dtype = DType::kF32;
  options.mode = IoMode::kDirect;
  auto direct = Loader::Open(f.path(), options);
  REQUIRE(direct);
  auto loaded = direct->Load();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("a shard truncated under a converted load fails naming file and tensor") {
  Fixture f;
  auto loader = Loader::Open(f.path(), LoadOptions{});
  REQUIRE(loader);
  const ShardInfo& last = loader->checkpoint().shards().back();
  REQUIRE(::truncate(last.path.c_str(), static_cast<off_t>(last.file_size - 10)) == 0);
  LoadOptions options;
  options.dtype = DType::kF32;
  auto converting = Loader::Open(loader->checkpoint(), options);
  REQUIRE(converting);
  auto loaded = converting->Load();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == ErrorCode::kTruncated);
  CHECK(loaded.error().path == last.path);
  CHECK_FALSE(loaded.error().tensor.empty());
}

}  // namespace
}  // namespace shardload
