// GPUDirect Storage without a GPU: SplitForGds against brute force, then
// loads to "cuda:0" with --gds through the fake runtime and the fake
// libcufile (fake_cufile.cpp, loaded by the engine's own dlopen): whole,
// selections, Reload and LoadInto (aligned and unaligned device buffers),
// each tensor copied back and compared with a plain pread of the file; every
// reason to fall back to staging (no library, driver, compatibility mode,
// --buffered, handle or buffer registration); every injected read failure
// (errno, cuFile error, end of file: kIoError naming file, tensor and
// offset; a short read resumed). After each load nothing is left
// registered, open or allocated. (Rank slices: tests/loader/tp_load_test.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "device/fake_cuda.h"
#include "device/gds.h"
#include "shardload/cancel.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

using test::ErrorText;
using test::FakeCuda;
using test::FakeCuFile;

// --- SplitForGds ----------------------------------------------------------------

// Every device byte a read, staged segment or GDS read writes, with its file
// byte (file << 40 | offset).
using ByteMap = std::map<std::uintptr_t, std::uint64_t>;

void AddSegment(const Segment& s, ByteMap& out, std::uintptr_t lo = 0,
                std::uintptr_t hi = UINTPTR_MAX) {
  for (std::uint64_t i = 0; i < s.count; ++i) {
    for (std::uint64_t j = 0; j < s.length; ++j) {
      const std::uintptr_t d = reinterpret_cast<std::uintptr_t>(s.dst) + i * s.dst_stride + j;
      if (d >= lo && d < hi) {
        CHECK(out.count(d) == 0);  // no byte written twice
        out[d] = (std::uint64_t{s.file} << 40) | (s.offset + i * s.src_stride + j);
      }
    }
  }
}

TEST_CASE("SplitForGds: every byte once, GDS reads aligned and only where allowed") {
  std::mt19937_64 rng(test::Seed() + 7);
  constexpr std::uint64_t kA = 64;  // a small alignment keeps brute force cheap
  std::uint64_t gds_total = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const std::uintptr_t base = std::uintptr_t{1} << 30;
    std::vector<DeviceTensor> tensors(1 + rng() % 4);
    std::vector<Segment> segments;
    std::uintptr_t at = base + (rng() % 3) * 16;
    for (std::uint32_t i = 0; i < tensors.size(); ++i) {
      DeviceTensor& t = tensors[i];
      t.device = reinterpret_cast<std::byte*>(at);
      t.zero_fill = rng() % 6 == 0;
      // One to three pieces, each a plain or strided segment.
      std::uint64_t filled = 0;
      for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
        Segment s;
        s.file = static_cast<std::uint32_t>(rng() % 3);
        s.tag = i;
        s.direct = rng() % 4 != 0;
        s.offset = rng() % 1000;
        s.dst = t.device + filled;
        if (rng() % 3 == 0) {
          s.length = 1 + rng() % 40;
          s.count = 1 + rng() % 5;
          s.src_stride = s.length + rng() % 30;
          s.dst_stride = s.length;
        } else {
          s.length = 1 + rng() % 500;
        }
        filled += s.length * s.count;
        segments.push_back(s);
      }
      t.size = filled + (t.zero_fill ? rng() % 50 : 0);  // a padding tail
      at += t.size + (rng() % 2) * 32;
    }
    std::vector<CuFileHandle> handles(3, nullptr);
    for (auto& h : handles) h = rng() % 4 != 0 ? reinterpret_cast<CuFileHandle>(&h) : nullptr;
    const std::uint64_t chunk = kA * (1 + rng() % 3);
    GdsSplit split = SplitForGds(tensors, segments, handles, kA, chunk);

    ByteMap want, got;
    for (const Segment& s : segments) AddSegment(s, want);
    std::uint64_t gds = 0;
    for (const GdsRead& r : split.reads) {
      INFO("iter ", iter);
      CHECK(r.offset % kA == 0);
      CHECK(r.length % kA == 0);
      CHECK(r.length <= chunk);
      CHECK(reinterpret_cast<std::uintptr_t>(r.device) % kA == 0);
      CHECK(handles[r.file] != nullptr);
      CHECK(!tensors[r.tensor].zero_fill);
      Segment as;
      as.file = r.file;
      as.offset = r.offset;
      as.length = r.length;
      as.dst = r.device;
      AddSegment(as, got);
      gds += r.length;
    }
    CHECK(gds == split.gds_bytes);
    gds_total += gds;
    // Staged tensors cover exactly the device bytes no GDS read writes.
    std::uint64_t tensor_bytes = 0, staged_bytes = 0;
    for (const DeviceTensor& t : tensors) tensor_bytes += t.size;
    for (std::uint32_t k = 0; k < split.staged.size(); ++k) {
      const DeviceTensor& st = split.staged[k];
      staged_bytes += st.size;
      const auto lo = reinterpret_cast<std::uintptr_t>(st.device);
      for (std::uintptr_t d = lo; d < lo + st.size; ++d) CHECK(got.count(d) == 0);
      for (const Segment& s : split.staged_segments) {
        if (s.tag == k) AddSegment(s, got, lo, lo + st.size);
      }
    }
    CHECK(staged_bytes + gds == tensor_bytes);
    for (const Segment& s : split.staged_segments) CHECK(s.tag < split.staged.size());
    CHECK(got == want);
  }
  CHECK(gds_total > 0);  // the generator does produce GDS reads
}

// --- loads through the fake libcufile ----------------------------------------------

// Shards of tensors of sizes around and across 4 KiB boundaries and larger
// than the chunk, never-zero bytes.
class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(99);
    const std::vector<std::pair<std::string, std::uint64_t>> specs = {
        {"a.one", 1},        {"a.big", 200003}, {"b.page", 4096},  {"b.odd", 12289},
        {"b.empty", 0},      {"c.mid", 65536},  {"c.tail", 3},     {"d.large", 300000},
        {"d.small", 5000}};
    std::vector<TensorData> data;
    for (const auto& [name, size] : specs) {
      std::vector<std::uint8_t>& b = bytes_[name];
      b.resize(size);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng() | 1);
      data.push_back(TensorData{name, DType::kU8, {size}, std::as_bytes(std::span(b)), {}});
      total_ += size;
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 250000;
    REQUIRE(WriteCheckpoint(dir_.path(), data, options).ok());
  }
  std::string path() const { return dir_.path(); }
  std::uint64_t total() const { return total_; }
  std::vector<std::uint8_t> Pread(const Checkpoint& c, const TensorInfo& t) const {
    std::vector<std::uint8_t> out = test::PreadBytes(c.shards()[t.shard].path, t.offset, t.size);
    CHECK(out == bytes_.at(t.name));
    return out;
  }

 private:
  test::TempDir dir_;
  std::map<std::string, std::vector<std::uint8_t>> bytes_;
  std::uint64_t total_ = 0;
};

LoadOptions GdsOptions(std::uint64_t staging = 1 << 20) {
  LoadOptions o;
  o.device = Device::Cuda(0);
  o.staging_bytes = staging;
  o.threads = 3;
  o.chunk_size = 16384;
  o.mode = IoMode::kDirect;
  o.gds = true;
  return o;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
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

// Nothing left: device memory, staging, streams, cuFile handles, buffers,
// the driver; and nothing misused on either side.
void CheckClean(const FakeCuda& cuda, const FakeCuFile& cufile) {
  CHECK(cuda.Live() == 0);
  CHECK(cufile.Live() == 0);
  CHECK(cuda.Count("misuse") == 0);
  CHECK(cufile.Count("misuse") == 0);
}

TEST_CASE("--gds: whole loads, selections and Reload land byte-exact, read by cuFile") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  for (std::uint64_t staging : {8192ULL, 1ULL << 20}) {
    INFO("staging ", staging);
    {
      auto loader = Loader::Open(f.path(), GdsOptions(staging));
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      CHECK(cufile.Count("driver_open") == 1);
      const long copied_before = cuda.Count("copied_bytes");
      auto loaded = loader->Load();
      REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
      const LoadStats& stats = loaded->stats();
      INFO(stats.transfer);
      CHECK(stats.bytes == f.total());
      CHECK(stats.device == "cuda:0");
      CHECK(Contains(stats.transfer, "cuFileRead of "));
      CHECK(Contains(stats.transfer, "destination registered"));
      CHECK(Contains(stats.transfer, "pinned staging"));  // the unaligned heads and tails
      CHECK(cufile.Count("reads") > 0);
      CHECK(cufile.Count("registered_reads") == cufile.Count("reads"));
      CHECK(cufile.Count("unaligned") == 0);
      // Most bytes go by cuFile; each read at most a chunk.
      CHECK(cufile.Count("read_bytes") > static_cast<long>(f.total() / 2));
      CHECK(cufile.Count("reads") * 16384 >= cufile.Count("read_bytes"));
      CHECK(cuda.Count("copied_bytes") - copied_before + cufile.Count("read_bytes") ==
            static_cast<long>(f.total()));
      CheckDeviceBytes(f, cuda, *loader, *loaded);
      CHECK(cufile.Count("live_handles") == 0);  // per load
      CHECK(cufile.Count("live_buffers") == 0);

      for (const LoadedTensor& t : loaded->tensors()) cuda.Fill(t.data.data(), t.data.size(), 0xEE);
      Status again = loader->Reload(*loaded);
      REQUIRE_MESSAGE(again.ok(), ErrorText(again));
      CHECK(Contains(loaded->stats().transfer, "cuFileRead of "));
      CheckDeviceBytes(f, cuda, *loader, *loaded);

      auto some = loader->Load(Selection{{"c.tail"}, {"d.*"}});
      REQUIRE_MESSAGE(some.has_value(), ErrorText(some));
      CHECK(some->tensors().size() == 3);
      CheckDeviceBytes(f, cuda, *loader, *some);
    }
    CheckClean(cuda, cufile);
    cufile.Reset();
  }
}

TEST_CASE("--gds: progress counts cuFile and staged bytes over the whole load") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  LoadOptions options = GdsOptions(8192);
  std::mutex mu;
  std::uint64_t max_done = 0;
  bool totals_ok = true;
  options.progress = [&](std::uint64_t done, std::uint64_t total) {
    std::lock_guard lock(mu);
    max_done = std::max(max_done, done);
    totals_ok = totals_ok && total == f.total() && done <= total;
  };
  {
    auto loader = Loader::Open(f.path(), options);
    REQUIRE(loader.has_value());
    auto loaded = loader->Load();
    REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
  }
  std::lock_guard lock(mu);
  CHECK(max_done == f.total());
  CHECK(totals_ok);
  CheckClean(cuda, cufile);
}

TEST_CASE("--gds LoadInto: aligned device buffers by cuFile, unaligned ones staged") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  for (std::uint64_t shift : {0ULL, 64ULL}) {
    INFO("shift ", shift);
    cufile.Reset();
    {
      auto loader = Loader::Open(f.path(), GdsOptions());
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      std::vector<Destination> dests;
      std::vector<void*> buffers;
      const std::uint64_t kGuard = 4096;
      for (const char* name : {"d.large", "a.one", "b.odd", "a.big"}) {
        const TensorInfo* t = loader->checkpoint().Find(name);
        // The tensor's file alignment kept (as library-owned memory does), plus SHIFT.
        const std::uint64_t lead = kGuard + t->offset % 4096 + shift;
        auto* b = static_cast<std::byte*>(cuda.Allocate(t->size + lead + kGuard, 0x5A));
        buffers.push_back(b);
        dests.push_back({name, b + lead, t->size});
      }
      auto stats = loader->LoadInto(dests);
      REQUIRE_MESSAGE(stats.has_value(), ErrorText(stats));
      INFO(stats->transfer);
      CHECK(stats->tensors == 4);
      if (shift == 0) {
        CHECK(cufile.Count("reads") > 0);
        CHECK(Contains(stats->transfer, "caller's buffers not registered"));
        CHECK(cufile.Count("registered_reads") == 0);
      } else {
        CHECK(cufile.Count("reads") == 0);  // no aligned device range
        CHECK(Contains(stats->transfer, "GDS: no aligned O_DIRECT range"));
      }
      CHECK(cufile.Count("unaligned") == 0);
      for (std::size_t i = 0; i < dests.size(); ++i) {
        const TensorInfo& t = *loader->checkpoint().Find(dests[i].name);
        const auto lead = static_cast<std::uint64_t>(static_cast<std::byte*>(dests[i].data) -
                                                     static_cast<std::byte*>(buffers[i]));
        auto all = cuda.ToHost(buffers[i], t.size + lead + kGuard);
        std::vector<std::uint8_t> body(all.begin() + static_cast<long>(lead),
                                       all.end() - static_cast<long>(kGuard));
        CHECK(body == f.Pread(loader->checkpoint(), t));
        CHECK(std::all_of(all.begin(), all.begin() + static_cast<long>(lead),
                          [](auto b) { return b == 0x5A; }));
        CHECK(std::all_of(all.end() - static_cast<long>(kGuard), all.end(),
                          [](auto b) { return b == 0x5A; }));
      }
      for (void* b : buffers) cuda.Free(b);
    }
    CheckClean(cuda, cufile);
  }
}

TEST_CASE("--gds falls back to staging, saying why: library, driver, compat, --buffered") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  struct Case {
    const char* var;
    const char* value;
    IoMode mode;
    const char* words;
  };
  const Case cases[] = {
      {"SHARDLOAD_CUFILE", "/nonexistent/libcufile.so.0", IoMode::kDirect,
       "GDS not used (libcufile not found: /nonexistent/libcufile.so.0"},
      {"FAKE_CUFILE_FAIL_DRIVER", "1", IoMode::kDirect,
       "GDS not used (cuFileDriverOpen: CU_FILE_DRIVER_NOT_INITIALIZED (cuFile error 5001))"},
      {"FAKE_CUFILE_COMPAT", "1", IoMode::kDirect, "(compatibility mode only)"},
      {"FAKE_CUFILE_FORCE_COMPAT", "1", IoMode::kDirect, "force compatibility mode"},
      {nullptr, nullptr, IoMode::kBuffered, "GDS not used (--buffered"},
  };
  for (const Case& c : cases) {
    INFO(c.words);
    const std::string saved = std::getenv("SHARDLOAD_CUFILE");
    if (c.var != nullptr) ::setenv(c.var, c.value, 1);
    {
      LoadOptions options = GdsOptions();
      options.mode = c.mode;
      auto loader = Loader::Open(f.path(), options);
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      auto loaded = loader->Load();
      REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
      INFO(loaded->stats().transfer);
      CHECK(Contains(loaded->stats().transfer, c.words));
      CHECK(Contains(loaded->stats().transfer, "staged through pinned host memory"));
      CHECK(cufile.Count("reads") == 0);
      CheckDeviceBytes(f, cuda, *loader, *loaded);
    }
    if (c.var != nullptr) ::unsetenv(c.var);
    ::setenv("SHARDLOAD_CUFILE", saved.c_str(), 1);
    CheckClean(cuda, cufile);
  }
  // Without --gds cuFile is never opened.
  cufile.Reset();
  {
    LoadOptions options = GdsOptions();
    options.gds = false;
    auto loader = Loader::Open(f.path(), options);
    REQUIRE(loader.has_value());
    auto loaded = loader->Load();
    REQUIRE(loaded.has_value());
    CHECK(!Contains(loaded->stats().transfer, "GDS"));
  }
  CHECK(cufile.Count("driver_opens") == 0);
  CheckClean(cuda, cufile);
}

TEST_CASE("--gds: a file cuFile cannot register, or a buffer it cannot, is staged") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  const auto shards = Checkpoint::Open(f.path())->shards().size();
  REQUIRE(shards >= 2);
  struct Case {
    const char* var;
    const char* value;
    const char* words;
    bool any_gds;
  };
  const Case cases[] = {
      {"FAKE_CUFILE_FAIL_HANDLE", "all",
       "not by GDS: " /* path */, false},
      {"FAKE_CUFILE_FAIL_HANDLE", "1",
       ": cuFileHandleRegister: CU_FILE_IO_NOT_SUPPORTED (cuFile error 5008)", true},
      {"FAKE_CUFILE_FAIL_BUFREG", "1",
       "destination not registered (cuFileBufRegister: CU_FILE_GPU_MEMORY_PINNING_FAILED", true},
  };
  for (const Case& c : cases) {
    INFO(c.var, "=", c.value);
    cufile.Reset();
    ::setenv(c.var, c.value, 1);
    {
      auto loader = Loader::Open(f.path(), GdsOptions());
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      auto loaded = loader->Load();
      REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
      INFO(loaded->stats().transfer);
      CHECK(Contains(loaded->stats().transfer, c.words));
      CHECK((cufile.Count("reads") > 0) == c.any_gds);
      if (std::string(c.var) == "FAKE_CUFILE_FAIL_BUFREG") {
        CHECK(cufile.Count("registered_reads") == 0);
      }
      CHECK(loaded->stats().bytes == f.total());
      CheckDeviceBytes(f, cuda, *loader, *loaded);
    }
    ::unsetenv(c.var);
    CheckClean(cuda, cufile);
  }
}

TEST_CASE("--gds read failures: kIoError naming file, tensor and offset; short reads resume") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  struct Case {
    const char* var;
    const char* value;
    const char* words;
    int sys_errno;
  };
  const Case cases[] = {
      {"FAKE_CUFILE_READ_EIO", "1", "Input/output error (errno 5)", EIO},
      {"FAKE_CUFILE_READ_EIO", "5", "Input/output error (errno 5)", EIO},
      {"FAKE_CUFILE_READ_ERROR", "3", "CU_FILE_NVFS_DRIVER_ERROR (cuFile error 5010)", 0},
      {"FAKE_CUFILE_READ_ZERO", "2", "0 bytes read: the file ends before the tensor", 0},
  };
  for (std::uint64_t staging : {8192ULL, 1ULL << 20}) {
    for (const Case& c : cases) {
      INFO(c.var, "=", c.value, " staging ", staging);
      cufile.Reset();
      {
        auto loader = Loader::Open(f.path(), GdsOptions(staging));
        REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
        ::setenv(c.var, c.value, 1);
        auto loaded = loader->Load();
        ::unsetenv(c.var);
        REQUIRE(!loaded.has_value());
        const Error& e = loaded.error();
        INFO(e.ToString());
        CHECK(e.code == ErrorCode::kIoError);
        CHECK(Contains(e.detail, "cuFileRead of "));
        CHECK(Contains(e.detail, " into cuda:0: "));
        CHECK(Contains(e.detail, c.words));
        CHECK(e.sys_errno == c.sys_errno);
        CHECK(Contains(e.path, ".safetensors"));
        CHECK(!e.tensor.empty());
        REQUIRE(e.offset.has_value());
        CHECK(*e.offset % 4096 == 0);
        CHECK(cuda.Live() == 0);
        CHECK(cufile.Count("live_handles") == 0);
        CHECK(cufile.Count("live_buffers") == 0);
        // The same Loader works again once the fault is gone.
        auto again = loader->Load();
        REQUIRE_MESSAGE(again.has_value(), ErrorText(again));
        CheckDeviceBytes(f, cuda, *loader, *again);
      }
      CheckClean(cuda, cufile);
    }
  }
  // A short read is resumed from where it stopped.
  cufile.Reset();
  ::setenv("FAKE_CUFILE_READ_SHORT", "2", 1);
  {
    auto loader = Loader::Open(f.path(), GdsOptions());
    REQUIRE(loader.has_value());
    auto loaded = loader->Load();
    REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
    CHECK(loaded->stats().short_reads == 1);
    CheckDeviceBytes(f, cuda, *loader, *loaded);
  }
  ::unsetenv("FAKE_CUFILE_READ_SHORT");
  CheckClean(cuda, cufile);
}

TEST_CASE("--gds: cancelled from the progress callback: kCancelled, nothing left") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  LoadOptions options = GdsOptions(8192);
  auto token = std::make_shared<CancelToken>();
  options.cancel = token;
  options.progress = [token](std::uint64_t, std::uint64_t) { token->Cancel(); };
  {
    auto loader = Loader::Open(f.path(), options);
    REQUIRE(loader.has_value());
    auto loaded = loader->Load();
    REQUIRE(!loaded.has_value());
    CHECK(loaded.error().code == ErrorCode::kCancelled);
  }
  CheckClean(cuda, cufile);
}

TEST_CASE("--gds in auto mode: page-cache ranges staged, the rest may go by cuFile") {
  Fixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  LoadOptions options = GdsOptions();
  options.mode = IoMode::kAuto;
  {
    auto loader = Loader::Open(f.path(), options);
    REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
    auto loaded = loader->Load();
    REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
    INFO(loaded->stats().transfer);
    CHECK(Contains(loaded->stats().transfer, "GDS: "));
    // Only what auto mode reads with O_DIRECT may go by cuFile.
    CHECK(cufile.Count("read_bytes") <= static_cast<long>(loaded->stats().bytes_direct));
    CheckDeviceBytes(f, cuda, *loader, *loaded);
  }
  CheckClean(cuda, cufile);
}

// A Llama-shaped layer (hf plan): colwise projections split along rows
// (contiguous: cuFile takes their aligned middles), rowwise ones along
// columns (strided: staged), a norm replicated.
class RankFixture {
 public:
  RankFixture() {
    const std::vector<std::pair<std::string, std::vector<std::uint64_t>>> specs = {
        {"model.layers.0.self_attn.q_proj.weight", {512, 512}},
        {"model.layers.0.self_attn.k_proj.weight", {256, 512}},
        {"model.layers.0.self_attn.v_proj.weight", {256, 512}},
        {"model.layers.0.self_attn.o_proj.weight", {512, 512}},
        {"model.layers.0.mlp.gate_proj.weight", {1024, 512}},
        {"model.layers.0.mlp.up_proj.weight", {1024, 512}},
        {"model.layers.0.mlp.down_proj.weight", {512, 1024}},
        {"model.layers.0.input_layernorm.weight", {512}}};
    std::mt19937_64 rng(5);
    std::vector<TensorData> data;
    for (const auto& [name, shape] : specs) {
      std::uint64_t n = 2;
      for (auto d : shape) n *= d;
      std::vector<std::uint8_t>& b = bytes_[name];
      b.resize(n);
      for (auto& x : b) x = static_cast<std::uint8_t>(rng() | 1);
      data.push_back(TensorData{name, DType::kBF16, shape, std::as_bytes(std::span(b)), {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 1500000;
    REQUIRE(WriteCheckpoint(dir_.path(), data, options).ok());
    test::WriteFile(dir_ / "config.json", R"({"num_attention_heads": 8,
      "num_key_value_heads": 4, "head_dim": 64, "hidden_size": 512, "base_model_tp_plan": {
      "layers.*.self_attn.q_proj": "colwise", "layers.*.self_attn.k_proj": "colwise",
      "layers.*.self_attn.v_proj": "colwise", "layers.*.self_attn.o_proj": "rowwise",
      "layers.*.mlp.gate_proj": "colwise", "layers.*.mlp.up_proj": "colwise",
      "layers.*.mlp.down_proj": "rowwise"}})");
  }
  std::string path() const { return dir_.path(); }

  // Rank R of W's bytes of T, sliced from a plain pread of the whole tensor:
  // rows (dim 0) for colwise, columns (dim 1) for rowwise, else all of it.
  std::vector<std::uint8_t> Expected(const Checkpoint& c, const TensorInfo& t, unsigned r,
                                     unsigned w) const {
    std::vector<std::uint8_t> full = test::PreadBytes(c.shards()[t.shard].path, t.offset, t.size);
    CHECK(full == bytes_.at(t.name));
    if (t.shape.size() != 2 || w == 1) return full;
    const bool rowwise = t.name.find("o_proj") != std::string::npos ||
                         t.name.find("down_proj") != std::string::npos;
    const std::uint64_t rows = t.shape[0], row_bytes = t.shape[1] * 2;
    if (!rowwise) {
      const std::uint64_t part = rows / w * row_bytes;
      return std::vector<std::uint8_t>(full.begin() + static_cast<long>(r * part),
                                       full.begin() + static_cast<long>((r + 1) * part));
    }
    const std::uint64_t cols = row_bytes / w;
    std::vector<std::uint8_t> out;
    for (std::uint64_t i = 0; i < rows; ++i) {
      auto at = full.begin() + static_cast<long>(i * row_bytes + r * cols);
      out.insert(out.end(), at, at + static_cast<long>(cols));
    }
    return out;
  }

 private:
  test::TempDir dir_;
  std::map<std::string, std::vector<std::uint8_t>> bytes_;
};

TEST_CASE("--gds rank slices (hf plan), Reload and LoadInto: byte-exact against pread slices") {
  RankFixture f;
  FakeCuda cuda;
  FakeCuFile cufile;
  for (std::uint64_t staging : {8192ULL, 4ULL << 20}) {
    {
      auto loader = Loader::Open(f.path(), GdsOptions(staging));
      REQUIRE_MESSAGE(loader.has_value(), ErrorText(loader));
      const Checkpoint& c = loader->checkpoint();
      for (unsigned w : {1u, 2u, 4u}) {
        for (unsigned r = 0; r < w; ++r) {
          INFO("staging ", staging, " rank ", r, " of ", w);
          const TensorParallel tp{r, w, PlanSource::Hf()};
          auto loaded = loader->Load({}, tp);
          REQUIRE_MESSAGE(loaded.has_value(), ErrorText(loaded));
          CHECK(Contains(loaded->stats().transfer, "cuFileRead of "));
          CHECK(loaded->tensors().size() == c.tensors().size());
          for (const LoadedTensor& t : loaded->tensors()) {
            INFO(t.name);
            CHECK(cuda.ToHost(t.data.data(), t.data.size()) ==
                  f.Expected(c, *c.Find(t.name), r, w));
            cuda.Fill(t.data.data(), t.data.size(), 0xEE);
          }
          Status again = loader->Reload(*loaded);
          REQUIRE_MESSAGE(again.ok(), ErrorText(again));
          for (const LoadedTensor& t : loaded->tensors()) {
            CHECK(cuda.ToHost(t.data.data(), t.data.size()) ==
                  f.Expected(c, *c.Find(t.name), r, w));
          }
          if (w != 2) continue;
          // Into caller buffers whose addresses keep each tensor's file
          // alignment, so that cuFile can take the contiguous slices too.
          auto plan = loader->Plan({}, tp);
          REQUIRE(plan.has_value());
          std::vector<Destination> dests;
          std::vector<void*> buffers;
          for (const PlannedTensor& p : plan->tensors) {
            const std::uint64_t lead = c.Find(p.name)->offset % 4096;
            auto* b = static_cast<std::byte*>(cuda.Allocate(p.bytes + 2 * 4096, 0x33));
            buffers.push_back(b);
            dests.push_back({p.name, b + lead, p.bytes});
          }
          auto stats = loader->LoadInto(dests, tp);
          REQUIRE_MESSAGE(stats.has_value(), ErrorText(stats));
          for (const Destination& d : dests) {
            INFO(d.name);
            CHECK(cuda.ToHost(d.data, d.size) == f.Expected(c, *c.Find(d.name), r, w));
          }
          for (void* b : buffers) cuda.Free(b);
        }
      }
    }
    CHECK(cufile.Count("reads") > 0);
    CHECK(cufile.Count("unaligned") == 0);
    CheckClean(cuda, cufile);
  }
}

}  // namespace
}  // namespace shardload
