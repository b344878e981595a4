// Tensor-parallel loads end to end: a small checkpoint (several shards,
// several dtypes) written with the project's writer, loaded for every rank of
// W in {1, 2, 3, 4, 8} under a JSON plan using every style and option and
// under `hf`, with both backends, buffered and O_DIRECT, into library memory
// (Load, Reload) and caller buffers (LoadInto). Each local tensor is compared
// with what the independent slicer of tests/tp (tp/slice_oracle.h: index
// arithmetic, never byte segments) says rank r gets of the full tensor, read
// back with a plain pread. The same loads to "cuda:0" through the fake CUDA
// runtime (tests/device), each local tensor copied back from the device.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "device/fake_cuda.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/test_util.h"
#include "tp/slice_oracle.h"

namespace shardload {
namespace {

using tp::Placement;
using tp::Style;
using tp::Uneven;
using tp::test::Case;
using tp::test::Expected;

struct Spec {
  std::string name;
  DType dtype;
  std::vector<std::uint64_t> shape;
};

const std::vector<Spec> kTensors = {
    {"a.col.weight", DType::kF32, {12, 6}},      {"a.col.bias", DType::kF32, {12}},
    {"a.row.weight", DType::kBF16, {6, 10}},     {"a.row.bias", DType::kBF16, {6}},
    {"a.fused.weight", DType::kF16, {16, 4}},    {"a.heads.weight", DType::kF32, {4, 12}},
    {"a.kv.weight", DType::kF32, {8, 4}},        {"a.embed.weight", DType::kBF16, {10, 8}},
    {"a.moe.experts.0.w", DType::kF32, {4, 4}},  {"a.moe.experts.1.w", DType::kF32, {4, 4}},
    {"a.moe.experts.2.w", DType::kF32, {4, 4}},  {"a.skipped", DType::kU8, {7}},
    {"a.plain", DType::kI64, {3, 2}},            {"a.big.weight", DType::kBF16, {40, 96}},
    {"model.layers.0.self_attn.q_proj.weight", DType::kBF16, {16, 16}},
    {"model.layers.0.self_attn.k_proj.weight", DType::kBF16, {8, 16}},
    {"model.layers.0.self_attn.v_proj.weight", DType::kBF16, {8, 16}},
    {"model.layers.0.self_attn.o_proj.weight", DType::kBF16, {16, 16}},
    {"model.layers.0.mlp.gate_proj.weight", DType::kBF16, {24, 16}},
    {"model.layers.0.mlp.up_proj.weight", DType::kBF16, {24, 16}},
    {"model.layers.0.mlp.down_proj.weight", DType::kBF16, {16, 24}},
};

// Plan A: valid for every W (uneven rules chunk and balanced).
const char kPlanA[] = R"({"tp_plan_version": 1, "uneven": "chunk", "rules": [
  {"match": "a.col", "split": "col"},
  {"match": "a.row", "split": "row"},
  {"match": "a.fused.weight", "split": "col", "blocks": 2},
  {"match": "a.heads.weight", "split": "row", "unit": 2, "uneven": "balanced"},
  {"match": "a.embed.weight", "split": "vocab", "pad_to": 4, "uneven": "chunk"},
  {"match": "a.moe.experts.{expert}.w", "split": "experts", "num_experts": 3},
  {"match": "a.skipped", "split": "skip"},
  {"match": "a.big.weight", "split": "row", "blocks": [32, 64]}]})";

// Plan B: replicate_when_fewer and an exact vocab split (W in 1, 2, 4, 8).
const char kPlanB[] = R"({"tp_plan_version": 1, "uneven": "exact", "rules": [
  {"match": "a.kv.weight", "split": "col", "unit": 4, "replicate_when_fewer": true},
  {"match": "a.embed.weight", "split": "vocab", "pad_to": 8},
  {"match": "a.big.weight", "split": "col", "blocks": [8, 32], "uneven": "chunk"}]})";

const char kConfig[] = R"({"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 4,
  "hidden_size": 16, "base_model_tp_plan": {
  "layers.*.self_attn.q_proj": "colwise", "layers.*.self_attn.k_proj": "colwise",
  "layers.*.self_attn.v_proj": "colwise", "layers.*.self_attn.o_proj": "rowwise",
  "layers.*.mlp.gate_proj": "colwise", "layers.*.mlp.up_proj": "colwise",
  "layers.*.mlp.down_proj": "rowwise"}})";

// The oracle case of each tensor under each plan, written from the plans
// above by hand (not parsed).
Case MakeCase(const TensorInfo& t, const std::string& plan) {
  Case c;
  c.tensor = t;
  c.style = Style::kReplicate;
  auto is = [&](const char* prefix) { return t.name.rfind(prefix, 0) == 0; };
  if (plan == "A") {
    if (is("a.col")) c.style = Style::kCol;
    if (is("a.row")) c.style = Style::kRow;
    if (is("a.fused")) { c.style = Style::kCol; c.block_k = 2; }
    if (is("a.heads")) { c.style = Style::kRow; c.unit = 2; c.uneven = Uneven::kBalanced; }
    if (is("a.embed")) { c.style = Style::kVocab; c.pad_to = 4; }
    if (is("a.big")) { c.style = Style::kRow; c.block_sizes = {32, 64}; }
  } else if (plan == "B") {
    c.uneven = Uneven::kExact;
    if (is("a.kv")) { c.style = Style::kCol; c.unit = 4; c.rwf = {true}; }
    if (is("a.embed")) { c.style = Style::kVocab; c.pad_to = 8; }
    if (is("a.big")) { c.style = Style::kCol; c.block_sizes = {8, 32}; c.uneven = Uneven::kChunk; }
  } else if (is("model.")) {  // hf: heads of 4, chunk
    bool row = t.name.find("o_proj") != std::string::npos ||
               t.name.find("down_proj") != std::string::npos;
    c.style = row ? Style::kRow : Style::kCol;
    if (t.name.find("_attn.") != std::string::npos) c.unit = 4;
    if (t.name.find("k_proj") != std::string::npos || t.name.find("v_proj") != std::string::npos) {
      c.rwf = {true};
    }
  }
  return c;
}

// Rank R of W's expected bytes and shape of T under PLAN; false: not loaded.
bool Expect(const TensorInfo& t, const std::vector<std::uint8_t>& full, const std::string& plan,
            unsigned r, unsigned w, std::vector<std::uint8_t>& bytes,
            std::vector<std::uint64_t>& shape) {
  if (plan == "A" && t.name == "a.skipped") return false;
  if (plan == "A" && t.name.rfind("a.moe.experts.", 0) == 0) {
    unsigned e = static_cast<unsigned>(t.name[14] - '0');
    std::vector<std::uint64_t> mine = tp::test::Deal(Uneven::kBalanced, 3, w, r);
    if (std::find(mine.begin(), mine.end(), e) == mine.end()) return false;
  }
  Case c = MakeCase(t, plan);
  Expected e = tp::test::Oracle(c, w);
  REQUIRE_MESSAGE(!e.refused, t.name);
  shape = t.shape;
  if (e.d < 0) {
    bytes = full;
    return true;
  }
  // e.map[r]: local index along dim d -> source index (-1: a zero row).
  std::uint64_t esize = DTypeBits(t.dtype) / 8;
  std::uint64_t outer = 1, inner = 1, n = t.shape[e.d], local_n = e.map[r].size();
  for (int k = 0; k < e.d; ++k) outer *= t.shape[k];
  for (std::size_t k = e.d + 1; k < t.shape.size(); ++k) inner *= t.shape[k];
  shape[e.d] = local_n;
  bytes.assign(outer * local_n * inner * esize, 0);
  for (std::uint64_t o = 0; o < outer; ++o) {
    for (std::uint64_t li = 0; li < local_n; ++li) {
      std::int64_t si = e.map[r][li];
      if (si < 0) continue;
      std::memcpy(&bytes[((o * local_n + li) * inner) * esize],
                  &full[((o * n + static_cast<std::uint64_t>(si)) * inner) * esize], inner * esize);
    }
  }
  return true;
}

class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(12345);
    std::vector<TensorData> data;
    for (const Spec& s : kTensors) {
      std::uint64_t n = 1;
      for (auto d : s.shape) n *= d;
      std::vector<std::uint8_t>& b = bytes_[s.name];
      b.resize(n * DTypeBits(s.dtype) / 8);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng() | 1);  // never zero
      data.push_back(TensorData{s.name, s.dtype, s.shape,
                                std::as_bytes(std::span(b)), {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 4000;
    REQUIRE(WriteCheckpoint(dir_.path(), data, options).ok());
    std::ofstream(dir_.path() + "/config.json") << kConfig;
    std::ofstream(dir_.path() + "/plan-a.json") << kPlanA;
    std::ofstream(dir_.path() + "/plan-b.json") << kPlanB;
  }
  std::string path() const { return dir_.path(); }
  std::string PlanPath(const std::string& plan) const {
    return plan == "hf" ? "hf" : dir_.path() + (plan == "A" ? "/plan-a.json" : "/plan-b.json");
  }
  // The full tensor as a plain pread of the file returns it.
  std::vector<std::uint8_t> Full(const Checkpoint& c, const TensorInfo& t) const {
    std::vector<std::uint8_t> out(t.size);
    int fd = ::open(c.shards()[t.shard].path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pread(fd, out.data(), out.size(), static_cast<off_t>(t.offset)) ==
            static_cast<ssize_t>(out.size()));
    ::close(fd);
    CHECK(out == bytes_.at(t.name));
    return out;
  }

 private:
  test::TempDir dir_;
  std::map<std::string, std::vector<std::uint8_t>> bytes_;
};

// A loaded tensor's bytes, copied back from the device when CUDA is given.
std::vector<std::uint8_t> HostBytes(const LoadedTensor& t, const test::FakeCuda* cuda) {
  if (cuda != nullptr) return cuda->ToHost(t.data.data(), t.data.size());
  const auto* p = reinterpret_cast<const std::uint8_t*>(t.data.data());
  return std::vector<std::uint8_t>(p, p + t.data.size());
}

// Checks LOADED against the oracle for rank R of W; returns the bytes.
std::uint64_t CheckRank(const Fixture& f, const Checkpoint& c, const LoadedCheckpoint& loaded,
                        const std::string& plan, unsigned r, unsigned w,
                        const test::FakeCuda* cuda = nullptr) {
  std::uint64_t bytes = 0;
  std::size_t count = 0;
  for (const TensorInfo& t : c.tensors()) {
    std::vector<std::uint8_t> want;
    std::vector<std::uint64_t> shape;
    bool load = Expect(t, f.Full(c, t), plan, r, w, want, shape);
    const LoadedTensor* got = loaded.Find(t.name);
    INFO(t.name, " plan ", plan, " rank ", r, " of ", w);
    REQUIRE((got != nullptr) == load);
    if (!load) continue;
    ++count;
    bytes += want.size();
    CHECK(got->shape == shape);
    REQUIRE(got->data.size() == want.size());
    CHECK(HostBytes(*got, cuda) == want);
  }
  CHECK(loaded.tensors().size() == count);
  CHECK(loaded.stats().bytes <= bytes);  // padding rows are not read
  return bytes;
}

std::vector<unsigned> Worlds(const std::string& plan) {
  if (plan == "A") return {1, 2, 3, 4, 8};
  return {1, 2, 4, 8};
}

void LoadEveryRank(const Fixture& f, LoadOptions options, const test::FakeCuda* cuda = nullptr) {
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader.has_value());
  for (std::string plan : {"A", "B", "hf"}) {
    for (unsigned w : Worlds(plan)) {
      for (unsigned r = 0; r < w; ++r) {
        TensorParallel tp{r, w, f.PlanPath(plan)};
        auto loaded = loader->Load({}, tp);
        REQUIRE_MESSAGE(loaded.has_value(), shardload::test::ErrorText(loaded));
        std::uint64_t bytes = CheckRank(f, loader->checkpoint(), *loaded, plan, r, w, cuda);
        const LoadStats& stats = loaded->stats();
        if (!options.direct) CHECK(stats.bytes_read == stats.bytes);
        auto planned = loader->Plan({}, tp);
        REQUIRE(planned.has_value());
        CHECK(planned->local_bytes == bytes);
        CHECK(planned->bytes == stats.bytes);
        // A device load splits reads at wave boundaries and stages each
        // tensor on its own 4 KiB boundary (no merging across tensors).
        if (cuda == nullptr) CHECK(planned->read_ops == stats.read_ops);
        if (cuda != nullptr) CHECK(planned->read_ops <= stats.read_ops);
        CHECK(planned->tensors.size() == loaded->tensors().size());
        CHECK(planned->bytes_read >= loaded->stats().bytes_read);
        // Reload into the same memory, after scribbling over it: padding
        // rows must come back zero.
        for (const LoadedTensor& t : loaded->tensors()) {
          if (cuda != nullptr) {
            cuda->Fill(t.data.data(), t.data.size(), 0xEE);
          } else {
            std::memset(t.data.data(), 0xEE, t.data.size());
          }
        }
        REQUIRE(loader->Reload(*loaded).ok());
        CheckRank(f, loader->checkpoint(), *loaded, plan, r, w, cuda);
      }
    }
  }
}

TEST_CASE("every rank of W in 1,2,3,4,8 matches the oracle: pread, buffered") {
  Fixture f;
  LoadOptions options;
  options.backend = Backend::kPread;
  options.threads = 3;
  LoadEveryRank(f, options);
}

TEST_CASE("every rank matches the oracle: io_uring (when usable), buffered and O_DIRECT") {
  Fixture f;
  for (bool direct : {false, true}) {
    LoadOptions options;
    options.threads = 2;
    options.direct = direct;
    auto probe = Loader::Open(f.path(), options);
    REQUIRE(probe.has_value());
    if (direct && !probe->Load({}).has_value()) {
      MESSAGE("O_DIRECT unsupported here; skipped");
      continue;
    }
    LoadEveryRank(f, options);
  }
}

TEST_CASE("every rank matches the oracle on cuda:0 (fake runtime), tensors split over waves") {
  Fixture f;
  test::FakeCuda cuda;
  for (std::uint64_t staging : {8192ULL, 256ULL << 20}) {
    LoadOptions options;
    options.threads = 2;
    options.device = Device::Cuda(0);
    options.staging_bytes = staging;
    LoadEveryRank(f, options, &cuda);
    CHECK(cuda.Live() == 0);
  }
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("LoadInto caller device buffers on cuda:0 (fake runtime), padding is zeroed") {
  Fixture f;
  test::FakeCuda cuda;
  LoadOptions options;
  options.device = Device::Cuda(0);
  options.staging_bytes = 8192;
  auto loader = Loader::Open(f.path(), options);
  REQUIRE_MESSAGE(loader.has_value(), shardload::test::ErrorText(loader));
  for (unsigned w : {2u, 4u}) {
    for (unsigned r = 0; r < w; ++r) {
      TensorParallel tp{r, w, f.PlanPath("B")};
      auto plan = loader->Plan({}, tp);
      REQUIRE(plan.has_value());
      std::vector<Destination> dests;
      for (const PlannedTensor& t : plan->tensors) {
        dests.push_back({t.name, cuda.Allocate(t.bytes, 0xEE), t.bytes});
      }
      auto stats = loader->LoadInto(dests, tp);
      REQUIRE_MESSAGE(stats.has_value(), shardload::test::ErrorText(stats));
      for (const Destination& d : dests) {
        const TensorInfo& t = *loader->checkpoint().Find(d.name);
        std::vector<std::uint8_t> want;
        std::vector<std::uint64_t> shape;
        REQUIRE(Expect(t, f.Full(loader->checkpoint(), t), "B", r, w, want, shape));
        CHECK(cuda.ToHost(d.data, d.size) == want);
        cuda.Free(d.data);
      }
    }
  }
  CHECK(cuda.Live() == 0);
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("LoadInto caller buffers of the local sizes; padding is zeroed") {
  Fixture f;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  for (unsigned w : {2u, 4u}) {
    for (unsigned r = 0; r < w; ++r) {
      TensorParallel tp{r, w, f.PlanPath("B")};
      auto plan = loader->Plan({}, tp);
      REQUIRE(plan.has_value());
      std::vector<std::vector<std::byte>> buffers;
      std::vector<Destination> dests;
      for (const PlannedTensor& t : plan->tensors) {
        buffers.emplace_back(t.bytes, std::byte{0xEE});
      }
      for (std::size_t i = 0; i < buffers.size(); ++i) {
        dests.push_back({plan->tensors[i].name, buffers[i].data(), buffers[i].size()});
      }
      auto stats = loader->LoadInto(dests, tp);
      REQUIRE_MESSAGE(stats.has_value(), shardload::test::ErrorText(stats));
      for (std::size_t i = 0; i < dests.size(); ++i) {
        const TensorInfo& t = *loader->checkpoint().Find(dests[i].name);
        std::vector<std::uint8_t> want;
        std::vector<std::uint64_t> shape;
        REQUIRE(Expect(t, f.Full(loader->checkpoint(), t), "B", r, w, want, shape));
        CHECK(shape == plan->tensors[i].shape);
        CHECK((want.empty() || std::memcmp(buffers[i].data(), want.data(), want.size()) == 0));
      }
    }
  }
}

TEST_CASE("refusals before any I/O, with the plan's error codes") {
  Fixture f;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  // Over 3 ranks plan B refuses the vocab (16 padded rows) and the kv heads
  // (2); the first tensor by name is named.
  auto bad = loader->Load({}, TensorParallel{0, 3, f.PlanPath("B")});
  REQUIRE(!bad.has_value());
  CHECK(bad.error().code == ErrorCode::kTpIndivisible);
  CHECK(bad.error().tensor == "a.embed.weight");
  CHECK(loader->Load({}, TensorParallel{3, 3, "hf"}).error().code == ErrorCode::kInvalidArgument);
  CHECK(loader->Load({}, TensorParallel{0, 2, ""}).error().code == ErrorCode::kInvalidArgument);
  CHECK(loader->Load({}, TensorParallel{0, 2, f.path() + "/nope.json"}).error().code ==
        ErrorCode::kIoError);
  std::ofstream(f.path() + "/bad.json") << R"({"tp_plan_version": 1, "rules": [{"match": "x"}]})";
  CHECK(loader->Plan({}, TensorParallel{0, 2, f.path() + "/bad.json"}).error().code ==
        ErrorCode::kTpBadRule);
  // A config.json path works like `hf`.
  auto via_path = loader->Plan({}, TensorParallel{1, 2, f.path() + "/config.json"});
  auto via_hf = loader->Plan({}, TensorParallel{1, 2, "hf"});
  REQUIRE(via_path.has_value());
  REQUIRE(via_hf.has_value());
  CHECK(via_path->bytes == via_hf->bytes);
  // A caller buffer of the full size is refused for a split tensor.
  std::vector<std::byte> full(16 * 16 * 2);
  Destination d{"model.layers.0.self_attn.q_proj.weight", full.data(), full.size()};
  CHECK(loader->LoadInto(std::span(&d, 1), TensorParallel{0, 2, "hf"}).error().code ==
        ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardload
