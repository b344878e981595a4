// Cooperative loads through the C++ API, members as threads of this process
// (each with its own ConnectLocal communicator and Loader): Load into owned
// memory (every tensor mapped from the node's one copy, copy-on-write: a
// member's writes stay its own), Reload, and LoadInto caller buffers with
// guard bytes, staged
// (--buffered / --direct) with a staging far smaller than a tensor, each
// byte-exact against a plain pread; the cooperation stats add up (every
// byte of the node read once); a member asking for another selection is
// refused; a cancelled member fails everyone. Under TSan the cases with
// several members skip: several Loaders running at once in one process race
// inside oneTBB's uninstrumented internals (arena memory recycled between
// threads); one Loader per process, as the CLI cases of coop_oracle.py run
// under TSan, is clean.
#include <doctest/doctest.h>

#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "shardload/cooperate.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/coop_members.h"
#include "support/test_util.h"

namespace shardload {
namespace {

constexpr int kTensors = 5;

std::uint64_t TensorBytes(int i) { return (std::uint64_t{300} << 10) + 4099 * i; }

std::string TensorName(int i) { return "t." + std::to_string(i); }

const std::string& Checkpoint3() {
  static test::TempDir dir;
  static const std::string path = [] {
    std::vector<TensorData> tensors;
    for (int i = 0; i < kTensors; ++i) {
      TensorData t;
      t.name = TensorName(i);
      t.shape = {TensorBytes(i)};
      t.fill = [i](std::uint64_t offset, std::span<std::byte> out) {
        for (std::size_t k = 0; k < out.size(); ++k) {
          out[k] = static_cast<std::byte>(((offset + k) * 151 + i * 29 + ((offset + k) >> 11)) & 0xff);
        }
      };
      tensors.push_back(std::move(t));
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 700 << 10;
    Status s = WriteCheckpoint(dir.path(), tensors, options);
    REQUIRE_MESSAGE(s.ok(), test::ErrorText(s));
    return dir.path();
  }();
  return path;
}

// "" when DATA holds tensor I's bytes in the file (plain pread oracle).
std::string Compare(const Loader& loader, const std::string& name, const std::byte* data) {
  const TensorInfo* t = loader.checkpoint().Find(name);
  if (t == nullptr) return "no " + name;
  auto want = test::PreadBytes(loader.checkpoint().shards()[t->shard].path, t->offset, t->size);
  return std::memcmp(want.data(), data, t->size) == 0 ? "" : name + " differs";
}

TEST_CASE("cooperative Load, Reload and LoadInto through the API, byte-exact") {
  SKIP_MEMBERS_UNDER_TSAN();
  for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
    INFO("mode " << IoModeName(mode));
    std::atomic<std::uint64_t> read_for_node{0}, node_bytes{0};
    std::barrier written(3);
    auto errors = test::RunMembers(3, test::MemberOptions(mode),
                                   [&](unsigned m, LoadOptions options) -> std::string {
      auto loader = Loader::Open(Checkpoint3(), options);
      if (!loader) return loader.error().ToString();
      auto loaded = loader->Load();
      if (!loaded) return loaded.error().ToString();
      const CooperationStats& c = loaded->stats().cooperation;
      if (c.local_size != 3 || c.waves < 10) return "cooperation stats: " + c.how;
      // Every member loads every tensor whole: each is mapped from the
      // node's one copy, but for the partial pages at its ends.
      if (c.bytes_shared < loaded->stats().bytes * 9 / 10 || c.bytes_shared > loaded->stats().bytes) {
        return "shared " + std::to_string(c.bytes_shared) + " of " +
               std::to_string(loaded->stats().bytes) + " bytes";
      }
      read_for_node += c.read_for_node;
      node_bytes = c.node_bytes;
      for (const LoadedTensor& t : loaded->tensors()) {
        if (auto d = Compare(*loader, t.name, t.data.data()); !d.empty()) return "load: " + d;
      }
      // Copy-on-write: what a member writes stays its own.
      for (const LoadedTensor& t : loaded->tensors()) std::memset(t.data.data(), 7 + m, t.data.size());
      written.arrive_and_wait();
      for (const LoadedTensor& t : loaded->tensors()) {
        for (std::byte b : t.data) {
          if (b != static_cast<std::byte>(7 + m)) return "another member's write shows in " + t.name;
        }
      }
      for (const LoadedTensor& t : loaded->tensors()) std::memset(t.data.data(), 0, t.data.size());
      if (Status s = loader->Reload(*loaded); !s) return s.error().ToString();
      for (const LoadedTensor& t : loaded->tensors()) {
        if (auto d = Compare(*loader, t.name, t.data.data()); !d.empty()) return "reload: " + d;
      }
      // LoadInto: unaligned buffers with guard bytes on both sides.
      std::vector<std::vector<std::byte>> buffers;
      std::vector<Destination> dests;
      for (int i = kTensors - 1; i >= 1; --i) {
        buffers.emplace_back(TensorBytes(i) + 67, std::byte{0xEE});
        dests.push_back({TensorName(i), buffers.back().data() + 33, TensorBytes(i)});
      }
      auto stats = loader->LoadInto(dests);
      if (!stats) return stats.error().ToString();
      for (std::size_t k = 0; k < dests.size(); ++k) {
        auto* data = static_cast<std::byte*>(dests[k].data);
        if (auto d = Compare(*loader, dests[k].name, data); !d.empty()) return "load_into: " + d;
        for (int g = 0; g < 33; ++g) {
          if (buffers[k][g] != std::byte{0xEE} || data[dests[k].size + g] != std::byte{0xEE}) {
            return "load_into wrote outside " + dests[k].name;
          }
        }
      }
      return "";
    });
    for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
    CHECK(read_for_node.load() == node_bytes.load());  // each byte once, by one member
  }
}

TEST_CASE("cooperative load: a member with another selection is refused, naming it") {
  SKIP_MEMBERS_UNDER_TSAN();
  auto errors = test::RunMembers(2, test::MemberOptions(IoMode::kBuffered),
                                 [&](unsigned m, LoadOptions options) -> std::string {
    auto loader = Loader::Open(Checkpoint3(), options);
    if (!loader) return loader.error().ToString();
    Selection sel;
    if (m == 1) sel.names = {TensorName(2)};
    auto loaded = loader->Load(sel);
    return loaded ? "" : loaded.error().ToString();
  });
  for (const std::string& e : errors) {
    CHECK(e.find("peer_mismatch") != std::string::npos);
    CHECK(e.find("has selection 't.2'") != std::string::npos);
    CHECK(e.find("has 'all'") != std::string::npos);
  }
}

TEST_CASE("cooperative load: a cancelled member fails the others") {
  SKIP_MEMBERS_UNDER_TSAN();
  auto errors = test::RunMembers(3, test::MemberOptions(IoMode::kBuffered),
                                 [&](unsigned m, LoadOptions options) -> std::string {
    auto token = std::make_shared<CancelToken>();
    options.cancel = token;
    auto loader = Loader::Open(Checkpoint3(), options);
    if (!loader) return loader.error().ToString();
    if (m == 1) token->Cancel();
    auto loaded = loader->Load();
    return loaded ? "" : loaded.error().ToString();
  });
  CHECK(errors[1].find("cancelled") != std::string::npos);
  for (unsigned m : {0u, 2u}) {
    INFO(errors[m]);
    CHECK(errors[m].find("peer_failed") != std::string::npos);
    CHECK(errors[m].find("rank 0 (local rank 1") != std::string::npos);
  }
}

TEST_CASE("cooperative load: a member whose Open fails (and drops its group) fails the others") {
  SKIP_MEMBERS_UNDER_TSAN();
  auto errors = test::RunMembers(3, test::MemberOptions(IoMode::kBuffered),
                                 [&](unsigned m, LoadOptions options) -> std::string {
    auto loader = Loader::Open(m == 2 ? Checkpoint3() + "/missing" : Checkpoint3(), options);
    if (!loader) return loader.error().ToString();
    auto loaded = loader->Load();
    return loaded ? "" : loaded.error().ToString();
  });
  CHECK(!errors[2].empty());  // its own error (no checkpoint there)
  MESSAGE(errors[0] << " / " << errors[1]);
  for (unsigned m : {0u, 1u}) {
    INFO(errors[m]);
    CHECK(errors[m].find("peer_failed") != std::string::npos);
    CHECK(errors[m].find("local member 2") != std::string::npos);
  }
}

TEST_CASE("cooperative loads refuse a tiny staging at Open") {
  LoadOptions options;
  auto alone = ConnectLocal(test::UniqueJob("api-test"), 0, 1);
  REQUIRE(alone);
  options.cooperate.group = std::move(*alone);
  options.cooperate.staging_bytes = 1024;
  CHECK(Loader::Open(Checkpoint3(), options).error().code == ErrorCode::kInvalidArgument);
}

// BF16 weights split by rows (col), by columns (row) and replicated, plus an
// F32 and a U8 tensor (converted and untouched).
const std::string& FloatCheckpoint() {
  static test::TempDir dir;
  static const std::string path = [] {
    const std::vector<std::tuple<std::string, DType, std::vector<std::uint64_t>>> specs = {
        {"m.cols.weight", DType::kBF16, {96, 80}},   {"m.rows.weight", DType::kBF16, {64, 200}},
        {"m.norm.weight", DType::kBF16, {40000}},    {"m.f32.weight", DType::kF32, {64, 100}},
        {"m.ids", DType::kU8, {7000}}};
    std::vector<TensorData> tensors;
    for (const auto& [name, dtype, shape] : specs) {
      TensorData t;
      t.name = name;
      t.dtype = dtype;
      t.shape = shape;
      t.fill = [seed = name.size()](std::uint64_t offset, std::span<std::byte> out) {
        for (std::size_t k = 0; k < out.size(); ++k) {
          // Finite values of every magnitude: exponents kept away from 0xff.
          const std::uint64_t x = (offset + k) * 2654435761u + seed;
          out[k] = static_cast<std::byte>((offset + k) % 2 == 1 ? (x >> 7) & 0x7e : x >> 3);
        }
      };
      tensors.push_back(std::move(t));
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 60 << 10;
    Status s = WriteCheckpoint(dir.path(), tensors, options);
    REQUIRE_MESSAGE(s.ok(), test::ErrorText(s));
    return dir.path();
  }();
  return path;
}

constexpr char kSplitPlan[] = R"({"tp_plan_version": 1, "rules": [
  {"match": "m.cols", "split": "col"}, {"match": "m.rows", "split": "row"},
  {"match": "m.f32", "split": "row"}]})";

TEST_CASE("cooperative dtype conversion refuses a tensor that splits its elements across the grid") {
  SKIP_MEMBERS_UNDER_TSAN();
  // "b" (BF16) starts one byte into the data, at an odd file offset.
  test::TempDir dir;
  std::string header =
      R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("b":{"dtype":"BF16","shape":[2048],"data_offsets":[1,4097]}})";
  while ((8 + header.size()) % 8 != 0) header += ' ';
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header + std::string(4097, '\x11');
  test::WriteFile(dir / "odd.safetensors", file);
  LoadOptions base = test::MemberOptions(IoMode::kBuffered);
  base.dtype = DType::kF32;
  auto errors = test::RunMembers(2, base, [&](unsigned, LoadOptions options) -> std::string {
    auto loader = Loader::Open(dir / "odd.safetensors", options);
    if (!loader) return loader.error().ToString();
    auto loaded = loader->Load();
    return loaded ? "" : loaded.error().ToString();
  });
  for (const std::string& e : errors) {
    INFO(e);
    CHECK((e.find("element boundary") != std::string::npos ||
           e.find("peer_failed") != std::string::npos));
  }
  // Its own error names the file, the tensor and the offset.
  INFO(errors[0]);
  CHECK(errors[0].find("unsupported") != std::string::npos);
  CHECK(errors[0].find("odd.safetensors") != std::string::npos);
  CHECK(errors[0].find("tensor `b`") != std::string::npos);
  CHECK(errors[0].find("BF16 element boundary") != std::string::npos);
}

TEST_CASE("cooperative dtype conversion: each rank's tensors equal its converted load alone") {
  SKIP_MEMBERS_UNDER_TSAN();
  for (IoMode mode : {IoMode::kBuffered, IoMode::kAuto}) {
    INFO("mode " << IoModeName(mode));
    LoadOptions base = test::MemberOptions(mode);
    base.dtype = DType::kF32;
    auto errors = test::RunMembers(3, base, [&](unsigned r, LoadOptions options) -> std::string {
      const TensorParallel tp{r, 3, PlanSource::Json(kSplitPlan)};
      auto loader = Loader::Open(FloatCheckpoint(), options);
      if (!loader) return loader.error().ToString();
      auto loaded = loader->Load({}, tp);
      if (!loaded) return loaded.error().ToString();
      const CooperationStats& c = loaded->stats().cooperation;
      if (c.local_size != 3) return "did not cooperate";
      if (mode == IoMode::kBuffered && c.bytes_staged == 0) return "nothing converted from staging";
      LoadOptions alone_options = options;
      alone_options.cooperate = {};
      auto alone = Loader::Open(FloatCheckpoint(), alone_options);
      if (!alone) return alone.error().ToString();
      auto want = alone->Load({}, tp);
      if (!want) return want.error().ToString();
      if (loaded->tensors().size() != want->tensors().size()) return "tensor count differs";
      for (std::size_t i = 0; i < want->tensors().size(); ++i) {
        const LoadedTensor& a = loaded->tensors()[i];
        const LoadedTensor& b = want->tensors()[i];
        if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape ||
            a.data.size() != b.data.size() ||
            std::memcmp(a.data.data(), b.data.data(), a.data.size()) != 0) {
          return a.name + " differs from the converted load alone";
        }
      }
      if (loaded->stats().bytes != want->stats().bytes) return "bytes differ";
      if (loaded->Find("m.cols.weight")->dtype != DType::kF32 ||
          loaded->Find("m.ids")->dtype != DType::kU8) {
        return "dtypes not converted as asked";
      }
      return "";
    });
    for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
  }
}

}  // namespace
}  // namespace shardload
