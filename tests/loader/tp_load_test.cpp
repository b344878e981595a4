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
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
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
  PlanSource PlanPath(const std::string& plan) const {
    if (plan == "hf") return PlanSource::Hf();
    return PlanSource::File(dir_.path() + (plan == "A" ? "/plan-a.json" : "/plan-b.json"));
  }
  // The full tensor as a plain pread of the file returns it.
  std::vector<std::uint8_t> Full(const Checkpoint& c, const TensorInfo& t) const {
    std::vector<std::uint8_t> out = test::PreadBytes(c.shards()[t.shard].path, t.offset, t.size);
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
  // Plans are compared with loads, so the mode is fixed: an auto plan follows
  // the page cache of the moment, which parallel tests change.
  if (options.mode == IoMode::kAuto) options.mode = IoMode::kBuffered;
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
        if (options.mode != IoMode::kDirect && (options.read_strategy == ReadStrategy::kExact ||
                                options.max_over_read == 1.0)) {
          CHECK(stats.bytes_read == stats.bytes);
        }
        if (options.mode != IoMode::kDirect && options.read_strategy == ReadStrategy::kAuto) {
          CHECK(stats.bytes_read >= stats.bytes);
          CHECK(static_cast<double>(stats.bytes_read) <=
                options.max_over_read * static_cast<double>(stats.bytes));
        }
        auto planned = loader->Plan({}, tp);
        REQUIRE(planned.has_value());
        CHECK(planned->local_bytes == bytes);
        CHECK(planned->bytes == stats.bytes);
        // A device load splits reads at wave boundaries and stages each
        // tensor on its own 4 KiB boundary (no merging across tensors).
        if (cuda == nullptr) CHECK(planned->read_ops == stats.read_ops);
        if (cuda != nullptr) CHECK(planned->read_ops <= stats.read_ops);
        CHECK(planned->tensors.size() == loaded->tensors().size());
        // O_DIRECT on a device: each wave piece (and each head or tail
        // cuFile leaves to staging) is widened to the alignment on its own.
        if (cuda == nullptr || options.mode != IoMode::kDirect) {
          CHECK(planned->bytes_read >= loaded->stats().bytes_read);
        }
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

const ReadStrategy kStrategies[] = {ReadStrategy::kAuto, ReadStrategy::kExact,
                                    ReadStrategy::kStaged, ReadStrategy::kMixed,
                                    ReadStrategy::kMapped};

// Every forced strategy, with reads large and small (a small chunk cuts
// staged reads inside runs), plus auto with max_over_read 1.
void LoadEveryStrategy(const Fixture& f, LoadOptions options) {
  for (ReadStrategy strategy : kStrategies) {
    for (std::uint64_t chunk : {std::uint64_t{4} << 20, kMinChunkSize}) {
      INFO("strategy ", ReadStrategyName(strategy), " chunk ", chunk);
      options.read_strategy = strategy;
      options.chunk_size = chunk;
      LoadEveryRank(f, options);
    }
  }
  options.read_strategy = ReadStrategy::kAuto;
  options.max_over_read = 1.0;
  LoadEveryRank(f, options);
}

TEST_CASE("every rank of W in 1,2,3,4,8 matches the oracle: pread, buffered, every strategy") {
  Fixture f;
  LoadOptions options;
  options.backend = Backend::kPread;
  options.threads = 3;
  LoadEveryStrategy(f, options);
}

TEST_CASE("every rank matches the oracle: io_uring (when usable), buffered and O_DIRECT, "
          "every strategy") {
  Fixture f;
  for (bool direct : {false, true}) {
    LoadOptions options;
    options.threads = 2;
    options.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
    auto probe = Loader::Open(f.path(), options);
    REQUIRE(probe.has_value());
    if (direct && !probe->Load().has_value()) {
      MESSAGE("O_DIRECT unsupported here; skipped");
      continue;
    }
    LoadEveryStrategy(f, options);
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

// (Tiny tensors: mostly heads and tails left to staging; large slices through
// cuFile are in tests/device/gds_test.cpp.)
TEST_CASE("every rank matches the oracle on cuda:0 with --gds (fake libcufile), O_DIRECT") {
  Fixture f;
  test::FakeCuda cuda;
  test::FakeCuFile cufile;
  LoadOptions options;
  options.threads = 2;
  options.device = Device::Cuda(0);
  options.staging_bytes = 8192;
  options.mode = IoMode::kDirect;
  options.gds = true;
  LoadEveryRank(f, options, &cuda);
  CHECK(cuda.Live() == 0);
  CHECK(cufile.Live() == 0);
  CHECK(cuda.Count("misuse") == 0);
  CHECK(cufile.Count("misuse") == 0);
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

TEST_CASE("every strategy: staged and mapped reads of a slice cover the gaps, exact reads do not") {
  Fixture f;
  LoadOptions options;
  options.threads = 1;
  TensorParallel tp{1, 4, f.PlanPath("hf")};
  Selection down{{"model.layers.0.mlp.down_proj.weight"}, {}};
  std::map<ReadStrategy, LoadStats> seen;
  for (ReadStrategy strategy : kStrategies) {
    options.read_strategy = strategy;
    auto loader = Loader::Open(f.path(), options);
    REQUIRE(loader.has_value());
    auto loaded = loader->Load(down, tp);
    REQUIRE(loaded.has_value());
    seen[strategy] = loaded->stats();
  }
  // down_proj [16, 24] BF16, rowwise over 4: 16 runs of 12 bytes, 48 apart.
  CHECK(seen[ReadStrategy::kExact].bytes == 16 * 12);
  CHECK(seen[ReadStrategy::kExact].bytes_read == 16 * 12);
  CHECK(seen[ReadStrategy::kExact].read_ops == 16);
  CHECK(seen[ReadStrategy::kStaged].bytes_read == 15 * 48 + 12);
  CHECK(seen[ReadStrategy::kStaged].read_ops == 1);
  // Mapped: one window of the covering range, its bytes counted as read.
  CHECK(seen[ReadStrategy::kMapped].bytes == 16 * 12);
  CHECK(seen[ReadStrategy::kMapped].bytes_read == 15 * 48 + 12);
  CHECK(seen[ReadStrategy::kMapped].read_ops == 1);
}

TEST_CASE("LoadInto caller buffers of the local sizes, padding zeroed, every strategy") {
  Fixture f;
  for (ReadStrategy strategy : kStrategies)
  for (bool direct : {false, true}) {
  LoadOptions options;
  options.read_strategy = strategy;
  options.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
  options.chunk_size = kMinChunkSize;
  INFO("strategy ", ReadStrategyName(strategy), " direct ", direct);
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader.has_value());
  if (direct && !loader->Load().has_value()) continue;  // O_DIRECT unsupported
  for (unsigned w : {2u, 4u, 8u}) {
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
  CHECK(loader->Load({}, TensorParallel{3, 3, PlanSource::Hf()}).error().code ==
        ErrorCode::kInvalidArgument);
  CHECK(loader->Load({}, TensorParallel{0, 2, {}}).error().code == ErrorCode::kInvalidArgument);
  auto missing = loader->Load({}, TensorParallel{0, 2, PlanSource::File(f.path() + "/nope.json")});
  CHECK(missing.error().code == ErrorCode::kIoError);
  CHECK(missing.error().sys_errno == ENOENT);
  CHECK(missing.error().path == f.path() + "/nope.json");
  std::ofstream(f.path() + "/bad.json") << R"({"tp_plan_version": 1, "rules": [{"match": "x"}]})";
  CHECK(loader->Plan({}, TensorParallel{0, 2, PlanSource::File(f.path() + "/bad.json")})
            .error()
            .code == ErrorCode::kTpBadRule);
  // A config.json path works like `hf`.
  auto via_path =
      loader->Plan({}, TensorParallel{1, 2, PlanSource::HfConfig(f.path() + "/config.json")});
  auto via_hf = loader->Plan({}, TensorParallel{1, 2, PlanSource::Hf()});
  REQUIRE(via_path.has_value());
  REQUIRE(via_hf.has_value());
  CHECK(via_path->bytes == via_hf->bytes);
  // A caller buffer of the full size is refused for a split tensor.
  std::vector<std::byte> full(16 * 16 * 2);
  Destination d{"model.layers.0.self_attn.q_proj.weight", full.data(), full.size()};
  CHECK(loader->LoadInto(std::span(&d, 1), TensorParallel{0, 2, PlanSource::Hf()}).error().code ==
        ErrorCode::kInvalidArgument);
}

// --- plan sources, the plan cache and PlanRanks ---------------------------------

// The fields a plan's users see, for comparing two plans.
void CheckSamePlan(const RankPlan& a, const RankPlan& b) {
  CHECK(a.rank == b.rank);
  CHECK(a.world == b.world);
  CHECK(a.bytes == b.bytes);
  CHECK(a.local_bytes == b.local_bytes);
  CHECK(a.bytes_read == b.bytes_read);
  CHECK(a.read_ops == b.read_ops);
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].name);
    CHECK(a.tensors[i].name == b.tensors[i].name);
    CHECK(a.tensors[i].shape == b.tensors[i].shape);
    CHECK(a.tensors[i].rule == b.tensors[i].rule);
    CHECK(a.tensors[i].strategy == b.tensors[i].strategy);
    CHECK(a.tensors[i].bytes_read == b.tensors[i].bytes_read);
    CHECK(a.tensors[i].read_ops == b.tensors[i].read_ops);
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_CASE("a plan in memory, from a file or told apart by content: the same slices") {
  Fixture f;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  const std::string plan_a = f.path() + "/plan-a.json", config = f.path() + "/config.json";
  auto by_file = loader->Plan({}, TensorParallel{1, 3, PlanSource::File(plan_a)});
  auto by_text = loader->Plan({}, TensorParallel{1, 3, PlanSource::Json(ReadAll(plan_a))});
  auto ours = PlanSource::FromFileContent(plan_a);
  REQUIRE(ours.has_value());
  CHECK(ours->kind == PlanSource::Kind::kJson);
  CHECK(ours->path == plan_a);
  auto by_content = loader->Plan({}, TensorParallel{1, 3, *ours});
  REQUIRE(by_file.has_value());
  REQUIRE(by_text.has_value());
  REQUIRE(by_content.has_value());
  CheckSamePlan(*by_file, *by_text);
  CheckSamePlan(*by_file, *by_content);

  auto hf_text = PlanSource::HfConfigJson(ReadAll(config));
  auto hf_content = PlanSource::FromFileContent(config);
  REQUIRE(hf_content.has_value());
  CHECK(hf_content->kind == PlanSource::Kind::kHfConfigJson);
  auto via_hf = loader->Plan({}, TensorParallel{0, 2, PlanSource::Hf()});
  auto via_text = loader->Plan({}, TensorParallel{0, 2, hf_text});
  auto via_content = loader->Plan({}, TensorParallel{0, 2, *hf_content});
  REQUIRE(via_hf.has_value());
  REQUIRE(via_text.has_value());
  REQUIRE(via_content.has_value());
  CheckSamePlan(*via_hf, *via_text);
  CheckSamePlan(*via_hf, *via_content);
  // A name ending in config.json means nothing: our plan under that name is ours.
  const std::string disguised = f.path() + "/plan.config.json";
  std::ofstream(disguised) << kPlanA;
  auto as_ours = PlanSource::FromFileContent(disguised);
  REQUIRE(as_ours.has_value());
  CHECK(as_ours->kind == PlanSource::Kind::kJson);

  // Errors of a plan in memory name the name it was given.
  auto bad = loader->Plan({}, TensorParallel{0, 2, PlanSource::Json("{", "<my plan>")});
  REQUIRE(!bad.has_value());
  CHECK(bad.error().code == ErrorCode::kTpPlanJson);
  CHECK(bad.error().path == "<my plan>");
  CHECK(PlanSource::Hf().Describe() == "hf");
  CHECK(PlanSource::File(plan_a).Describe() == plan_a);
}

TEST_CASE("a FIFO or a directory given as a plan is refused without hanging") {
  Fixture f;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  const std::string fifo = f.path() + "/plan.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // nobody ever writes to it
  for (const PlanSource& source : {PlanSource::File(fifo), PlanSource::HfConfig(fifo),
                                   PlanSource::File(f.path())}) {
    auto plan = loader->Plan({}, TensorParallel{0, 2, source});
    REQUIRE(!plan.has_value());
    CHECK(plan.error().code == ErrorCode::kNotRegularFile);
    CHECK(plan.error().path == source.path);
  }
  auto content = PlanSource::FromFileContent(fifo);
  REQUIRE(!content.has_value());
  CHECK(content.error().code == ErrorCode::kNotRegularFile);
}

TEST_CASE("a Loader reads each plan once: later calls use the parsed plan") {
  Fixture f;
  const std::string path = f.path() + "/cached.json";
  std::ofstream(path) << kPlanA;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  const TensorParallel tp{2, 4, PlanSource::File(path)};
  auto first = loader->Plan({}, tp);
  REQUIRE(first.has_value());
  // Replace the file with garbage: this Loader does not read it again, for
  // any call or rank; a new Loader does.
  std::ofstream(path, std::ios::trunc) << "not json";
  auto again = loader->Plan({}, tp);
  REQUIRE(again.has_value());
  CheckSamePlan(*first, *again);
  auto loaded = loader->Load({}, TensorParallel{1, 4, tp.plan});
  REQUIRE_MESSAGE(loaded.has_value(), shardload::test::ErrorText(loaded));
  CheckRank(f, loader->checkpoint(), *loaded, "A", 1, 4);
  auto fresh = Loader::Open(f.path(), {});
  REQUIRE(fresh.has_value());
  CHECK(fresh->Plan({}, tp).error().code == ErrorCode::kTpPlanJson);
}

TEST_CASE("PlanRanks equals Plan rank by rank; per-tensor reads add up") {
  Fixture f;
  for (bool direct : {false, true}) {
    LoadOptions options;
    options.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
    options.threads = 3;
    auto loader = Loader::Open(f.path(), options);
    REQUIRE(loader.has_value());
    for (std::string plan : {"A", "hf"}) {
      for (unsigned w : plan == "A" ? std::vector<unsigned>{1, 3, 8} : Worlds(plan)) {
        INFO("plan ", plan, " world ", w, " direct ", direct);
        auto all = loader->PlanRanks({}, f.PlanPath(plan), w);
        REQUIRE_MESSAGE(all.has_value(), shardload::test::ErrorText(all));
        REQUIRE(all->size() == w);
        for (unsigned r = 0; r < w; ++r) {
          auto one = loader->Plan({}, TensorParallel{r, w, f.PlanPath(plan)});
          REQUIRE(one.has_value());
          CheckSamePlan((*all)[r], *one);
          std::uint64_t ops = 0, read = 0;
          for (const PlannedTensor& t : one->tensors) {
            CHECK(!t.strategy.empty());
            ops += t.read_ops;
            read += t.bytes_read;
          }
          CHECK(ops == one->read_ops);
          CHECK(read == one->bytes_read);
        }
      }
    }
    CHECK(loader->PlanRanks({}, PlanSource::Hf(), 0).error().code ==
          ErrorCode::kInvalidArgument);
    CHECK(loader->PlanRanks({}, PlanSource::None(), 2).error().code ==
          ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("a plain load is the world-1 identity: same tensors, bytes and reads") {
  Fixture f;
  auto loader = Loader::Open(f.path(), {});
  REQUIRE(loader.has_value());
  auto plain = loader->Load();
  auto identity = loader->Load({}, TensorParallel{0, 1, PlanSource::None()});
  auto planned = loader->Plan({}, TensorParallel{});
  REQUIRE(plain.has_value());
  REQUIRE(identity.has_value());
  REQUIRE(planned.has_value());
  REQUIRE(plain->tensors().size() == loader->checkpoint().tensors().size());
  CHECK(plain->stats().read_ops == identity->stats().read_ops);
  CHECK(plain->stats().read_ops == planned->read_ops);
  CHECK(plain->stats().bytes == planned->bytes);
  for (const LoadedTensor& t : plain->tensors()) {
    const TensorInfo& info = *loader->checkpoint().Find(t.name);
    std::vector<std::uint8_t> full = f.Full(loader->checkpoint(), info);
    CHECK(t.shape == info.shape);
    REQUIRE(t.data.size() == full.size());
    CHECK((full.empty() || std::memcmp(t.data.data(), full.data(), full.size()) == 0));
    CHECK(std::memcmp(identity->Find(t.name)->data.data(), full.data(), full.size()) == 0);
  }
  // Whole tensors that follow each other in a shard still coalesce: fewer
  // reads than tensors.
  CHECK(plain->stats().read_ops < plain->tensors().size());
}

}  // namespace
}  // namespace shardload
