// The device stage without a GPU. Pure arithmetic against brute force
// (ClipSegment, CutWaves, ParseDevice), then loads to "cuda:0" through the
// fake runtime (fake_cudart.cpp, loaded by the engine's own dlopen): whole,
// selections, Reload and LoadInto into device buffers, with rings small
// enough to split tensors over many waves, each tensor's device bytes copied
// back (cudaMemcpy) and compared with a plain pread of the file. Then every
// injected failure: a clear error and nothing left allocated, registered or
// running. (Rank slices on the device: tests/loader/tp_load_test.cpp.)
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "device/clip.h"
#include "device/fake_cuda.h"
#include "device/waves.h"
#include "shardload/device.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

using test::ErrorText;
using test::FakeCuda;

// --- arithmetic ---------------------------------------------------------------

TEST_CASE("ParseDevice and DeviceName") {
  CHECK(*ParseDevice("cpu") == Device::Cpu());
  CHECK(*ParseDevice("cuda") == Device::Cuda(0));
  CHECK(*ParseDevice("cuda:0") == Device::Cuda(0));
  CHECK(*ParseDevice("cuda:12") == Device::Cuda(12));
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:+1", "cuda:1x", "CUDA:0",
                          "cuda:99999999999", "cuda0"}) {
    auto d = ParseDevice(bad);
    REQUIRE_MESSAGE(!d.has_value(), bad);
    CHECK(d.error().code == ErrorCode::kInvalidArgument);
    CHECK(d.error().detail.find(std::string("\"") + bad + "\"") != std::string::npos);
  }
  CHECK(DeviceName(Device::Cuda(3)) == "cuda:3");
  CHECK(DeviceName(Device::Cpu()) == "cpu");
}

// Every (destination address, file offset) pair of S's bytes in [lo, hi).
std::vector<std::pair<std::uintptr_t, std::uint64_t>> Bytes(const Segment& s, std::uintptr_t lo,
                                                            std::uintptr_t hi) {
  std::vector<std::pair<std::uintptr_t, std::uint64_t>> out;
  for (std::uint64_t i = 0; i < s.count; ++i) {
    for (std::uint64_t j = 0; j < s.length; ++j) {
      std::uintptr_t d = reinterpret_cast<std::uintptr_t>(s.dst) + i * s.dst_stride + j;
      if (d >= lo && d < hi) out.emplace_back(d, s.offset + i * s.src_stride + j);
    }
  }
  return out;
}

TEST_CASE("ClipSegment keeps exactly the bytes in the range, each at its file offset") {
  std::mt19937_64 rng(test::Seed());
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  for (int iter = 0; iter < 20000; ++iter) {
    Segment s;
    s.file = 1;
    s.tag = 7;
    s.offset = pick(1000);
    s.length = 1 + pick(9);
    s.count = 1 + pick(8);
    s.dst_stride = s.count > 1 ? s.length + pick(6) : 0;
    s.src_stride = s.count > 1 ? s.length + pick(20) : 0;
    const std::uintptr_t base = 4096;
    s.dst = reinterpret_cast<std::byte*>(base + pick(16));
    const std::uintptr_t span = s.count * std::max(s.dst_stride, s.length) + 40;
    std::uintptr_t lo = base + pick(span), hi = base + pick(span);
    if (lo > hi) std::swap(lo, hi);
    std::vector<Segment> out;
    ClipSegment(s, lo, hi, out);
    INFO("iter ", iter, " len ", s.length, " count ", s.count, " ds ", s.dst_stride, " dst ",
         reinterpret_cast<std::uintptr_t>(s.dst) - base, " [", lo - base, ",", hi - base, ")");
    CHECK(out.size() <= 3);
    std::vector<std::pair<std::uintptr_t, std::uint64_t>> got;
    for (const Segment& c : out) {
      CHECK(c.length > 0);
      CHECK(c.count >= 1);
      CHECK(c.file == s.file);
      CHECK(c.tag == s.tag);
      auto b = Bytes(c, 0, UINTPTR_MAX);
      got.insert(got.end(), b.begin(), b.end());
    }
    std::sort(got.begin(), got.end());
    CHECK(got == Bytes(s, lo, hi));
  }
}

TEST_CASE("CutWaves covers each tensor once, in aligned pieces within each half") {
  std::mt19937_64 rng(test::Seed() + 1);
  for (int iter = 0; iter < 2000; ++iter) {
    const std::uint64_t half = kStagingAlignment * (1 + rng() % 4);
    std::vector<DeviceTensor> tensors(rng() % 8);
    for (auto& t : tensors) t.size = rng() % 3 == 0 ? 0 : rng() % (3 * half);
    auto waves = CutWaves(tensors, half);
    std::vector<std::uint64_t> covered(tensors.size(), 0);
    for (const auto& wave : waves) {
      REQUIRE(!wave.empty());
      std::uint64_t end = 0;
      for (const WavePiece& p : wave) {
        CHECK(p.length > 0);
        CHECK(p.staging % kStagingAlignment == 0);
        CHECK(p.staging >= end);  // no overlap
        CHECK(p.staging + p.length <= half);
        CHECK(p.begin == covered[p.tensor]);  // in order, no gap
        covered[p.tensor] += p.length;
        end = p.staging + p.length;
      }
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) CHECK(covered[i] == tensors[i].size);
  }
}

// --- loads through the fake runtime --------------------------------------------

// A few shards of tensors of awkward sizes (1 byte to ~100 KiB), never-zero bytes.
class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(777);
    const std::vector<std::pair<std::string, std::uint64_t>> specs = {
        {"a.one", 1},          {"a.small", 5000},   {"b.big", 100003}, {"b.empty", 0},
        {"c.page", 4096},      {"c.odd", 12289},    {"d.mid", 40000},  {"d.tail", 3}};
    std::vector<TensorData> data;
    for (const auto& [name, size] : specs) {
      std::vector<std::uint8_t>& b = bytes_[name];
      b.resize(size);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng() | 1);
      data.push_back(TensorData{name, DType::kU8, {size}, std::as_bytes(std::span(b)), {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 60000;
    REQUIRE(WriteCheckpoint(dir_.path(), data, options).ok());
  }
  std::string path() const { return dir_.path(); }
  // The tensor as a plain pread of its shard returns it.
  std::vector<std::uint8_t> Pread(const Checkpoint& c, const TensorInfo& t) const {
    std::vector<std::uint8_t> out = test::PreadBytes(c.shards()[t.shard].path, t.offset, t.size);
    CHECK(out == bytes_.at(t.name));
    return out;
  }

 private:
  test::TempDir dir_;
  std::map<std::string, std::vector<std::uint8_t>> bytes_;
};

LoadOptions DeviceOptions(std::uint64_t staging, Backend backend = Backend::kAuto) {
  LoadOptions o;
  o.device = Device::Cuda(0);
  o.staging_bytes = staging;
  o.threads = 3;
  o.backend = backend;
  o.chunk_size = 8192;
  return o;
}

void CheckDeviceBytes(const Fixture& f, const FakeCuda& cuda, const Loader& loader,
                      const LoadedCheckpoint& loaded) {
  for (const LoadedTensor& t : loaded.tensors()) {
    INFO(t.name);
    const TensorInfo* info = loader.checkpoint().Find(t.name);
    REQUIRE(info != nullptr);
    CHECK(cuda.ToHost(t.data.data(), t.data.size()) == f.Pread(loader.checkpoint(), *info));
  }
}

TEST_CASE("whole loads, selections and Reload land byte-exact on the device") {
  Fixture f;
  FakeCuda cuda;
  for (std::uint64_t staging : {8192ULL, 3 * 8192ULL, 1ULL << 20, 256ULL << 20}) {
    for (Backend backend : {Backend::kAuto, Backend::kPread}) {
      INFO("staging ", staging);
      auto loader = Loader::Open(f.path(), DeviceOptions(staging, backend));
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      {
        auto loaded = loader->Load();
        REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
        CHECK(loaded->device() == Device::Cuda(0));
        CHECK(loaded->tensors().size() == loader->checkpoint().tensors().size());
        CHECK(loaded->stats().device == "cuda:0");
        CHECK(loaded->stats().bytes == 161392);
        CHECK(loaded->stats().transfer.find("pinned staging") != std::string::npos);
        CheckDeviceBytes(f, cuda, *loader, *loaded);
        for (const LoadedTensor& t : loaded->tensors()) {
          cuda.Fill(t.data.data(), t.data.size(), 0xEE);
        }
        REQUIRE_MESSAGE(loader->Reload(*loaded).ok(), ErrorText(loader->Reload(*loaded)));
        CheckDeviceBytes(f, cuda, *loader, *loaded);

        auto some = loader->Load(Selection{{"d.tail"}, {"b.*"}});
        REQUIRE_MESSAGE(some.has_value(), ErrorText(some));
        CHECK(some->tensors().size() == 3);
        CheckDeviceBytes(f, cuda, *loader, *some);
      }
      CHECK(cuda.Live() == 0);
    }
  }
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("progress counts over the whole device load, not per wave") {
  Fixture f;
  FakeCuda cuda;
  LoadOptions options = DeviceOptions(8192);
  std::mutex mu;
  std::uint64_t max_done = 0;
  std::vector<std::uint64_t> totals;
  options.progress = [&](std::uint64_t done, std::uint64_t total) {
    std::lock_guard lock(mu);
    max_done = std::max(max_done, done);
    totals.push_back(total);
  };
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader.has_value());
  auto loaded = loader->Load();
  REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
  std::lock_guard lock(mu);
  CHECK(max_done == 161392);
  REQUIRE(!totals.empty());
  CHECK(std::all_of(totals.begin(), totals.end(), [](auto t) { return t == 161392; }));
}

TEST_CASE("LoadInto caller device buffers, written only within their bounds") {
  Fixture f;
  FakeCuda cuda;
  auto loader = Loader::Open(f.path(), DeviceOptions(16384));
  REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
  std::vector<Destination> dests;
  std::vector<void*> buffers;
  const std::uint64_t kGuard = 64;
  for (const char* name : {"b.big", "a.one", "c.odd", "a.one"}) {
    const TensorInfo* t = loader->checkpoint().Find(name);
    auto* b = static_cast<std::byte*>(cuda.Allocate(t->size + 2 * kGuard, 0x5A));
    buffers.push_back(b);
    dests.push_back({name, b + kGuard, t->size});
  }
  auto stats = loader->LoadInto(dests);
  REQUIRE_MESSAGE(stats.has_value(), ErrorText(stats));
  CHECK(stats->tensors == 4);
  for (std::size_t i = 0; i < dests.size(); ++i) {
    const TensorInfo& t = *loader->checkpoint().Find(dests[i].name);
    auto all = cuda.ToHost(buffers[i], t.size + 2 * kGuard);
    std::vector<std::uint8_t> body(all.begin() + kGuard, all.end() - kGuard);
    CHECK(body == f.Pread(loader->checkpoint(), t));
    CHECK(std::all_of(all.begin(), all.begin() + kGuard, [](auto b) { return b == 0x5A; }));
    CHECK(std::all_of(all.end() - kGuard, all.end(), [](auto b) { return b == 0x5A; }));
  }
  for (void* b : buffers) cuda.Free(b);
  CHECK(cuda.Live() == 0);
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("no library, no device, no such device: kUnsupported saying what is missing") {
  Fixture f;
  FakeCuda cuda;
  ::setenv("SHARDLOAD_CUDART", "/nonexistent/libcudart.so.12", 1);
  auto none = Loader::Open(f.path(), DeviceOptions(1 << 20));
  REQUIRE(!none.has_value());
  CHECK(none.error().code == ErrorCode::kUnsupported);
  CHECK(none.error().detail.find("libcudart") != std::string::npos);
  CHECK(none.error().detail.find("/nonexistent/libcudart.so.12") != std::string::npos);
  ::setenv("SHARDLOAD_CUDART", FakeCuda::LibraryPath().c_str(), 1);

  ::setenv("FAKE_CUDA_DEVICES", "0", 1);
  auto no_device = Loader::Open(f.path(), DeviceOptions(1 << 20));
  REQUIRE(!no_device.has_value());
  CHECK(no_device.error().code == ErrorCode::kUnsupported);
  CHECK(no_device.error().detail.find("no CUDA device") != std::string::npos);
  ::setenv("FAKE_CUDA_DEVICES", "2", 1);
  LoadOptions third = DeviceOptions(1 << 20);
  third.device = Device::Cuda(2);
  auto missing = Loader::Open(f.path(), third);
  REQUIRE(!missing.has_value());
  CHECK(missing.error().code == ErrorCode::kUnsupported);
  CHECK(missing.error().detail.find("cuda:2 does not exist: 2 CUDA device(s)") !=
        std::string::npos);
  ::unsetenv("FAKE_CUDA_DEVICES");
  // A CPU load needs nothing of CUDA.
  auto cpu = Loader::Open(f.path(), {});
  REQUIRE(cpu.has_value());
  CHECK(cpu->Load().has_value());
  CHECK(cuda.Live() == 0);
}

TEST_CASE("allocation, registration, copy and late stream failures: clear errors, nothing leaks") {
  Fixture f;
  FakeCuda cuda;
  struct Case {
    const char* var;
    const char* value;
    ErrorCode code;
    const char* words;
  };
  const Case cases[] = {
      {"FAKE_CUDA_FAIL_MALLOC", "1", ErrorCode::kResourceExhausted, "cudaMalloc of "},
      {"FAKE_CUDA_FAIL_REGISTER", "1", ErrorCode::kResourceExhausted, "cudaHostRegister"},
      {"FAKE_CUDA_FAIL_COPY", "1", ErrorCode::kIoError, "cudaMemcpyAsync"},
      {"FAKE_CUDA_FAIL_COPY", "4", ErrorCode::kIoError, "cudaMemcpyAsync"},
      {"FAKE_CUDA_LATE_ERROR", "1", ErrorCode::kIoError, "illegal memory access"},
      {"FAKE_CUDA_LATE_ERROR", "6", ErrorCode::kIoError, "illegal memory access"},
  };
  for (const Case& c : cases) {
    for (std::uint64_t staging : {8192ULL, 1ULL << 20}) {
      INFO(c.var, "=", c.value, " staging ", staging);
      auto loader = Loader::Open(f.path(), DeviceOptions(staging));
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      ::setenv(c.var, c.value, 1);
      auto loaded = loader->Load();
      ::unsetenv(c.var);
      // With a 1 MiB ring the load is one wave of 7 copies; the late error
      // on the 6th is still reported (at the final synchronize).
      REQUIRE(!loaded.has_value());
      CHECK(loaded.error().code == c.code);
      CHECK(loaded.error().detail.find(c.words) != std::string::npos);
      CHECK(loaded.error().detail.find("cuda:0") != std::string::npos);
      if (std::string(c.var) == "FAKE_CUDA_FAIL_COPY") CHECK(!loaded.error().tensor.empty());
      CHECK(cuda.Live() == 0);
      // The same Loader works again once the fault is gone.
      auto again = loader->Load();
      REQUIRE_MESSAGE(again.has_value(), ErrorText(again));
      CheckDeviceBytes(f, cuda, *loader, *again);
    }
  }
  CHECK(cuda.Live() == 0);
  CHECK(cuda.Count("misuse") == 0);
}

TEST_CASE("Reload refuses tensors on another device, bad staging options are refused") {
  Fixture f;
  FakeCuda cuda;
  auto host = Loader::Open(f.path(), {});
  auto dev = Loader::Open(f.path(), DeviceOptions(1 << 20));
  REQUIRE(host.has_value());
  REQUIRE(dev.has_value());
  auto on_host = host->Load();
  REQUIRE(on_host.has_value());
  Status s = dev->Reload(*on_host);
  REQUIRE(!s.ok());
  CHECK(s.error().code == ErrorCode::kInvalidArgument);
  CHECK(s.error().detail.find("on cpu, this Loader loads to cuda:0") != std::string::npos);
  auto tiny = Loader::Open(f.path(), DeviceOptions(100));
  REQUIRE(!tiny.has_value());
  CHECK(tiny.error().code == ErrorCode::kInvalidArgument);
  CHECK(tiny.error().detail.find("staging_bytes") != std::string::npos);
  LoadOptions no_streams = DeviceOptions(1 << 20);
  no_streams.device_streams = 0;
  auto refused = Loader::Open(f.path(), no_streams);
  REQUIRE(!refused.has_value());
  CHECK(refused.error().code == ErrorCode::kInvalidArgument);
  CHECK(cuda.Live() == 0);
}

}  // namespace
}  // namespace shardload
