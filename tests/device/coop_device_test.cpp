// Cooperative loads to "cuda:0" through the fake runtime: members as threads
// of this process (each its own ConnectLocal communicator and Loader), rank
// slices of a plan with contiguous (col), strided (row: one
// cudaMemcpy2DAsync per batch of runs), padded (vocab: padding zeroed on the
// device) and replicated tensors, staged through a shared staging far
// smaller than a tensor; Load, Reload and LoadInto caller device buffers,
// each tensor copied back and compared with slices cut from a plain pread of
// the file. Copy and registration failures fail every member, and nothing is
// left registered, allocated or streaming. Skipped under TSan, as
// tests/coop/api_test.cpp (several Loaders in one process race inside
// oneTBB's uninstrumented internals).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "device/fake_cuda.h"
#include "shardload/cooperate.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/coop_members.h"
#include "support/test_util.h"

namespace shardload {
namespace {

using test::ErrorText;
using test::FakeCuda;

constexpr char kPlan[] = R"({"tp_plan_version": 1, "rules": [
  {"match": "m.cols", "split": "col"}, {"match": "m.rows", "split": "row"},
  {"match": "m.embed", "split": "vocab", "pad_to": 64},
  {"match": "m.norm", "split": "replicate"}]})";

struct Spec {
  std::string name;
  std::uint64_t rows, cols;  // BF16; cols == 0: 1-D of ROWS
};

const std::vector<Spec>& Specs() {
  static const std::vector<Spec> specs = {{"m.cols.weight", 96, 80},
                                          {"m.rows.weight", 64, 200},
                                          {"m.embed.weight", 1000, 24},
                                          {"m.norm.weight", 80, 0}};
  return specs;
}

class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(11);
    std::vector<TensorData> data;
    for (const Spec& s : Specs()) {
      std::vector<std::uint8_t>& b = bytes_[s.name];
      b.resize(s.rows * std::max<std::uint64_t>(s.cols, 1) * 2);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng() | 1);
      std::vector<std::uint64_t> shape = {s.rows};
      if (s.cols != 0) shape.push_back(s.cols);
      data.push_back(TensorData{s.name, DType::kBF16, shape, std::as_bytes(std::span(b)), {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 40000;
    REQUIRE(WriteCheckpoint(dir_.path(), data, options).ok());
  }
  std::string path() const { return dir_.path(); }

  // Rank R of W's bytes of the tensor named NAME, cut from a plain pread of
  // the whole tensor.
  std::vector<std::uint8_t> Expected(const Checkpoint& c, const std::string& name, unsigned r,
                                     unsigned w) const {
    const TensorInfo& t = *c.Find(name);
    std::vector<std::uint8_t> full = test::PreadBytes(c.shards()[t.shard].path, t.offset, t.size);
    CHECK(full == bytes_.at(name));
    if (t.shape.size() != 2) return full;
    const std::uint64_t rows = t.shape[0], row_bytes = t.shape[1] * 2;
    std::vector<std::uint8_t> out;
    if (name == "m.rows.weight") {  // columns r of w of every row
      const std::uint64_t part = row_bytes / w;
      for (std::uint64_t i = 0; i < rows; ++i) {
        auto at = full.begin() + static_cast<long>(i * row_bytes + r * part);
        out.insert(out.end(), at, at + static_cast<long>(part));
      }
      return out;
    }
    // Rows r of w; the vocab split first pads the rows to a multiple of 64
    // with zero rows.
    const std::uint64_t padded = name == "m.embed.weight" ? (rows + 63) / 64 * 64 : rows;
    const std::uint64_t per = padded / w;
    for (std::uint64_t i = r * per; i < (r + 1) * per; ++i) {
      if (i < rows) {
        auto at = full.begin() + static_cast<long>(i * row_bytes);
        out.insert(out.end(), at, at + static_cast<long>(row_bytes));
      } else {
        out.insert(out.end(), row_bytes, 0);
      }
    }
    return out;
  }

 private:
  test::TempDir dir_;
  std::map<std::string, std::vector<std::uint8_t>> bytes_;
};

// Options of a member loading to cuda:0 with MODE.
LoadOptions DeviceMember(IoMode mode) {
  LoadOptions options = test::MemberOptions(mode);
  options.device = Device::Cuda(0);
  return options;
}

// "" when every tensor of LOADED (rank R of W) holds its expected bytes.
std::string CheckRank(const Fixture& f, const FakeCuda& cuda, const Loader& loader,
                      const LoadedCheckpoint& loaded, unsigned r, unsigned w) {
  if (loaded.tensors().size() != Specs().size()) return "wrong tensor count";
  for (const LoadedTensor& t : loaded.tensors()) {
    if (cuda.ToHost(t.data.data(), t.data.size()) !=
        f.Expected(loader.checkpoint(), t.name, r, w)) {
      return t.name + " differs";
    }
  }
  return "";
}

TEST_CASE("cooperative rank slices land byte-exact on each member's device") {
  SKIP_MEMBERS_UNDER_TSAN();
  Fixture f;
  FakeCuda cuda;
  for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
    for (unsigned w : {2u, 4u}) {
      INFO("mode ", std::string(IoModeName(mode)), ", ", w, " members");
      const long copies_2d = cuda.Count("copies_2d");
      auto errors = test::RunMembers(w, DeviceMember(mode),
                                     [&](unsigned r, LoadOptions options) -> std::string {
        auto loader = Loader::Open(f.path(), options);
        if (!loader) return loader.error().ToString();
        const TensorParallel tp{r, w, PlanSource::Json(kPlan)};
        auto loaded = loader->Load({}, tp);
        if (!loaded) return loaded.error().ToString();
        const LoadStats& s = loaded->stats();
        if (s.device != "cuda:0" || s.transfer.find("cooperative: ") != 0 ||
            s.transfer.find("shared staging") == std::string::npos) {
          return "stats: device " + s.device + ", transfer " + s.transfer;
        }
        if (s.cooperation.waves < 2) return "too few waves: " + s.cooperation.how;
        if (auto d = CheckRank(f, cuda, *loader, *loaded, r, w); !d.empty()) return "load: " + d;
        for (const LoadedTensor& t : loaded->tensors()) {
          cuda.Fill(t.data.data(), t.data.size(), 0xEE);
        }
        if (Status s2 = loader->Reload(*loaded); !s2) return s2.error().ToString();
        if (auto d = CheckRank(f, cuda, *loader, *loaded, r, w); !d.empty()) return "reload: " + d;
        // Into caller device buffers, with guard bytes on both sides.
        auto plan = loader->Plan({}, tp);
        if (!plan) return plan.error().ToString();
        std::vector<Destination> dests;
        std::vector<void*> buffers;
        for (const PlannedTensor& p : plan->tensors) {
          auto* b = static_cast<std::byte*>(cuda.Allocate(p.bytes + 64, 0x33));
          buffers.push_back(b);
          dests.push_back({p.name, b + 32, p.bytes});
        }
        auto stats = loader->LoadInto(dests, tp);
        std::string bad = stats ? "" : stats.error().ToString();
        for (std::size_t k = 0; k < dests.size() && bad.empty(); ++k) {
          std::vector<std::uint8_t> got = cuda.ToHost(buffers[k], dests[k].size + 64);
          std::vector<std::uint8_t> want(32, 0x33);
          auto slice = f.Expected(loader->checkpoint(), dests[k].name, r, w);
          want.insert(want.end(), slice.begin(), slice.end());
          want.insert(want.end(), 32, 0x33);
          if (got != want) bad = "load_into: " + dests[k].name + " differs or wrote outside";
        }
        for (void* b : buffers) cuda.Free(b);
        return bad;
      });
      for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
      CHECK(cuda.Count("copies_2d") > copies_2d);  // the strided slices
      CHECK(cuda.Live() == 0);
    }
  }
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("cooperative device loads: registration and copy failures fail every member") {
  SKIP_MEMBERS_UNDER_TSAN();
  Fixture f;
  FakeCuda cuda;
  for (const char* fault : {"FAKE_CUDA_FAIL_REGISTER=1", "FAKE_CUDA_FAIL_COPY=3",
                            "FAKE_CUDA_LATE_ERROR=2"}) {
    INFO(fault);
    const std::string setting = fault;
    const auto eq = setting.find('=');
    ::setenv(setting.substr(0, eq).c_str(), setting.substr(eq + 1).c_str(), 1);
    auto errors = test::RunMembers(4, DeviceMember(IoMode::kBuffered),
                                   [&](unsigned r, LoadOptions options) {
      auto loader = Loader::Open(f.path(), options);
      if (!loader) return loader.error().ToString();
      auto loaded = loader->Load({}, TensorParallel{r, 4, PlanSource::Json(kPlan)});
      return loaded ? std::string() : loaded.error().ToString();
    });
    ::unsetenv(setting.substr(0, eq).c_str());
    bool own = false;
    for (const std::string& e : errors) {
      CHECK_MESSAGE(!e.empty(), "a member succeeded");
      own = own || e.find("peer_failed") == std::string::npos;
      // Each error is either the CUDA call's or a peer's, naming it.
      CHECK_MESSAGE((e.find("cuda") != std::string::npos || e.find("peer_failed") != std::string::npos), e);
    }
    CHECK(own);
    CHECK(cuda.Live() == 0);
  }
}

}  // namespace
}  // namespace shardload
