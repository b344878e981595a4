// Random raw checkpoints, the pread oracle, and the shared load checks.
#include "io/load_harness.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "index/checkpoint_access.h"

namespace shardload::test {
namespace {

constexpr std::uint64_t kChunk = 16 << 10;

std::string RandomBytes(std::mt19937_64& rng, std::uint64_t n) {
  std::string s(n, '\0');
  for (std::uint64_t i = 0; i < n; i += 8) {
    std::uint64_t x = rng();
    std::memcpy(s.data() + i, &x, std::min<std::uint64_t>(8, n - i));
  }
  return s;
}

std::string ShapeJson(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

LoadOptions Options(Backend backend, bool direct, unsigned threads, unsigned depth) {
  LoadOptions o;
  o.backend = backend;
  o.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
  o.threads = threads;
  o.queue_depth = depth;
  o.chunk_size = kChunk;
  return o;
}

// A checkpoint of `n` shards with one tensor each of `bytes` bytes.
Checkpoint SmallCheckpoint(const std::string& dir, int n, std::uint64_t bytes,
                           std::mt19937_64& rng) {
  std::vector<std::vector<TensorSpec>> shards;
  for (int k = 0; k < n; ++k) {
    shards.push_back({{"s" + std::to_string(k) + ".w", DType::kU8, {bytes}},
                      {"s" + std::to_string(k) + ".b", DType::kF32, {3}}});
  }
  return WriteShards(dir, shards, rng);
}

bool SkipIfNoDirect(const Error& e) {
  if (e.code != ErrorCode::kUnsupported) return false;
  MESSAGE("O_DIRECT unsupported here, skipped: " << e.ToString());
  return true;
}

}  // namespace

std::uint64_t ByteSize(DType dtype, const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;
  return n * DTypeBits(dtype) / 8;
}

Checkpoint WriteShards(const std::string& dir, const std::vector<std::vector<TensorSpec>>& shards,
                       std::mt19937_64& rng) {
  std::vector<ShardInfo> infos;
  std::vector<TensorInfo> tensors;
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const std::vector<TensorSpec>& specs = shards[k];
    std::vector<std::size_t> order(specs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
    std::string data;
    std::vector<std::uint64_t> begin(specs.size());
    for (std::size_t i : order) {
      const TensorSpec& t = specs[i];
      begin[i] = data.size();
      data += RandomBytes(rng, ByteSize(t.dtype, t.shape));
      json += ",\"" + t.name + "\":{\"dtype\":\"" + std::string(DTypeName(t.dtype)) +
              "\",\"shape\":" + ShapeJson(t.shape) + ",\"data_offsets\":[" +
              std::to_string(begin[i]) + "," + std::to_string(data.size()) + "]}";
    }
    json += "}";
    while (json.size() % 8 != 0) json += ' ';
    ShardInfo shard;
    shard.name = "shard-" + std::to_string(k) + ".safetensors";
    shard.path = dir + "/" + shard.name;
    shard.header_size = json.size();
    shard.data_offset = 8 + json.size();
    shard.file_size = shard.data_offset + data.size();
    shard.num_tensors = static_cast<std::uint32_t>(specs.size());
    WriteFile(shard.path, RawSafetensors(json, data));
    for (std::size_t i = 0; i < specs.size(); ++i) {
      TensorInfo t;
      t.name = specs[i].name;
      t.dtype = specs[i].dtype;
      t.shape = specs[i].shape;
      t.shard = static_cast<std::uint32_t>(k);
      t.offset = shard.data_offset + begin[i];
      t.size = ByteSize(t.dtype, t.shape);
      tensors.push_back(std::move(t));
    }
    infos.push_back(std::move(shard));
  }
  std::string path = infos.empty() ? dir : infos[0].path;
  return internal::CheckpointAccess::Make(path, "", std::move(infos), std::move(tensors), {}, {});
}

std::vector<TensorSpec> RandomTensors(std::mt19937_64& rng, int count, int first_layer,
                                      std::uint64_t big) {
  static const char* kParts[] = {"attn.weight", "attn.bias", "mlp.weight", "mlp.bias"};
  std::vector<TensorSpec> out;
  for (int i = 0; i < count; ++i) {
    TensorSpec t;
    t.name = "model.layers." + std::to_string(first_layer + i / 4) + "." + kParts[i % 4];
    t.dtype = static_cast<DType>(i % kNumDTypes);
    const unsigned bits = DTypeBits(t.dtype);
    const std::uint64_t bytes_per = bits >= 8 ? bits / 8 : 1;
    // Sub-byte types need element counts whose bits fill whole bytes.
    const std::uint64_t quantum = bits >= 8 ? 1 : 8;
    switch (rng() % 10) {
      case 0:  // empty
        t.shape = {rng() % 3, 0};
        break;
      case 1:  // scalar (sub-byte types: 8 elements)
        t.shape = bits >= 8 ? std::vector<std::uint64_t>{} : std::vector<std::uint64_t>{8};
        break;
      case 2:
      case 3: {  // larger than a chunk
        std::uint64_t n = (big + rng() % (3 * big)) / bytes_per / quantum * quantum;
        t.shape = {quantum, n / quantum};
        break;
      }
      default:  // odd sizes
        t.shape = {(1 + rng() % 3000) * quantum};
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<TensorSpec> TinyTensors(int count) {
  std::vector<TensorSpec> out;
  for (int i = 0; i < count; ++i) {
    out.push_back({"tiny." + std::to_string(i) + ".w", DType::kU8,
                   {1 + static_cast<std::uint64_t>(i % 16)}});
  }
  return out;
}

std::string OracleRead(const Checkpoint& checkpoint, const TensorInfo& tensor) {
  const std::string& path = checkpoint.shards()[tensor.shard].path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("oracle: cannot open " + path);
  std::string out(tensor.size, '\0');
  std::uint64_t done = 0;
  while (done < tensor.size) {
    ssize_t n = ::pread(fd, out.data() + done, tensor.size - done,
                        static_cast<off_t>(tensor.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (done != tensor.size) throw std::runtime_error("oracle: short file " + path);
  return out;
}

namespace {

Checkpoint FixtureCheckpoint(const std::string& dir) {
  std::mt19937_64 rng(Seed());
  std::vector<std::vector<TensorSpec>> shards;
  for (int k = 0; k < 3; ++k) shards.push_back(RandomTensors(rng, 40, 10 * k, kChunk * 2));
  shards.push_back(TinyTensors(2000));
  return WriteShards(dir, shards, rng);
}

}  // namespace

Fixture::Fixture() : checkpoint(FixtureCheckpoint(dir.path())) {
  for (const TensorInfo& t : checkpoint.tensors()) oracle[t.name] = OracleRead(checkpoint, t);
}

const Fixture& SharedFixture() {
  static const Fixture fixture;
  return fixture;
}

namespace {

Selection SomeTensors(const Checkpoint& ckpt) {
  Selection s;
  s.globs = {"model.layers.*.mlp.**", "tiny.1*.w"};
  s.names = {ckpt.tensors()[3].name, ckpt.tensors().back().name};
  return s;
}

void CheckOwned(const Fixture& f, Loader& loader, const Selection& sel) {
  auto expected = Select(f.checkpoint, sel);
  REQUIRE(expected);
  auto loaded = loader.Load(sel);
  REQUIRE_MESSAGE(loaded, shardload::test::ErrorText(loaded));
  const std::vector<LoadedTensor>& got = loaded->tensors();
  REQUIRE(got.size() == expected->size());
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const TensorInfo& t = *(*expected)[i];
    CHECK(got[i].name == t.name);
    CHECK(got[i].dtype == t.dtype);
    CHECK(got[i].shape == t.shape);
    REQUIRE(got[i].data.size() == t.size);
    CHECK(got[i].data.data() != nullptr);
    const std::string& want = f.oracle.at(t.name);
    if (std::memcmp(got[i].data.data(), want.data(), want.size()) != 0) {
      FAIL("tensor " << t.name << " differs from the oracle");
    }
    CHECK(loaded->Find(t.name) == &got[i]);
    bytes += t.size;
  }
  CHECK(loaded->stats().bytes == bytes);
  CHECK(loaded->stats().tensors == got.size());
  CHECK(loaded->stats().bytes_read >= bytes);
}

void CheckCaller(const Fixture& f, Loader& loader, const Selection& sel, std::mt19937_64& rng) {
  auto picked = Select(f.checkpoint, sel);
  REQUIRE(picked);
  // One buffer, tensors at random misalignments with guard gaps.
  std::vector<std::size_t> at;
  std::size_t size = 0;
  for (const TensorInfo* t : *picked) {
    size += rng() % 64;
    at.push_back(size);
    size += t->size;
  }
  constexpr std::byte kGuard{0xCD};
  std::vector<std::byte> memory(size + 64, kGuard);
  std::vector<Destination> dests;
  for (std::size_t i = 0; i < picked->size(); ++i) {
    dests.push_back({(*picked)[i]->name, memory.data() + at[i], (*picked)[i]->size});
  }
  std::shuffle(dests.begin(), dests.end(), rng);
  auto stats = loader.LoadInto(dests);
  REQUIRE_MESSAGE(stats, shardload::test::ErrorText(stats));
  std::uint64_t bytes = 0;
  for (const Destination& d : dests) {
    const std::string& want = f.oracle.at(d.name);
    if (std::memcmp(d.data, want.data(), want.size()) != 0) {
      FAIL("tensor " << d.name << " differs from the oracle");
    }
    bytes += d.size;
  }
  // The guard bytes between destinations are untouched.
  std::size_t end = 0;
  for (std::size_t i = 0; i <= at.size(); ++i) {
    std::size_t next = i < at.size() ? at[i] : memory.size();
    for (std::size_t k = end; k < next; ++k) {
      if (memory[k] != kGuard) FAIL("byte " << k << " outside destinations written");
    }
    if (i < at.size()) end = at[i] + (*picked)[i]->size;
  }
  CHECK(stats->bytes == bytes);
  CHECK(stats->tensors == dests.size());
  CHECK(stats->memory == "caller-provided");
}

}  // namespace

void CheckLoadMatrix(Backend backend, bool direct, bool caller_memory) {
  const Fixture& f = SharedFixture();
  std::mt19937_64 rng(Seed() + 17);
  const Selection all;
  const Selection some = SomeTensors(f.checkpoint);
  for (unsigned threads : {1u, 2u, 8u}) {
    for (unsigned depth : {1u, 64u}) {
      for (const Selection* sel : {&all, &some}) {
        CAPTURE(threads);
        CAPTURE(depth);
        CAPTURE(sel == &some);
        auto loader = Loader::Open(f.checkpoint, Options(backend, direct, threads, depth));
        REQUIRE(loader);
        if (caller_memory) {
          CheckCaller(f, *loader, *sel, rng);
        } else {
          CheckOwned(f, *loader, *sel);
        }
      }
    }
  }
  // Backend and mode are reported.
  auto loader = Loader::Open(f.checkpoint, Options(backend, direct, 2, 8));
  REQUIRE(loader);
  auto loaded = loader->Load(some);
  if (!loaded && direct && SkipIfNoDirect(loaded.error())) return;
  REQUIRE(loaded);
  CHECK(loaded->stats().backend == backend);
  CHECK(!loaded->stats().backend_reason.empty());
  CHECK(loaded->stats().mode == (direct ? IoMode::kDirect : IoMode::kBuffered));
  CHECK(loaded->stats().bytes_direct + loaded->stats().bytes_buffered ==
        loaded->stats().bytes_read);
  CHECK((loaded->stats().bytes_direct > 0) == direct);
  CHECK(loaded->stats().threads == 2);
  CHECK(!loaded->stats().memory.empty());
}

int OpenFdCount() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

void CheckErrorPaths(Backend backend, bool direct) {
  std::mt19937_64 rng(Seed() + 99);
  TempDir dir;
  const int fds_before = OpenFdCount();
  {
    INFO("missing shard: kIoError naming the file");
    Checkpoint ckpt = SmallCheckpoint(dir / "missing", 2, 5000, rng);
    std::filesystem::remove(ckpt.shards()[1].path);
    auto loader = Loader::Open(ckpt, Options(backend, direct, 2, 8));
    REQUIRE(loader);
    auto loaded = loader->Load();
    REQUIRE(!loaded);
    CHECK(loaded.error().code == ErrorCode::kIoError);
    CHECK(loaded.error().path == ckpt.shards()[1].path);
    CHECK(loaded.error().sys_errno == ENOENT);
  }
  if (!direct) {
    INFO("unreadable shard (a directory): the read fails with EISDIR");
    Checkpoint ckpt = SmallCheckpoint(dir / "unreadable", 1, 5000, rng);
    std::filesystem::remove(ckpt.shards()[0].path);
    std::filesystem::create_directory(ckpt.shards()[0].path);
    auto loader = Loader::Open(ckpt, Options(backend, direct, 2, 8));
    auto loaded = loader->Load();
    REQUIRE(!loaded);
    CHECK(loaded.error().code == ErrorCode::kIoError);
    CHECK(loaded.error().sys_errno == EISDIR);
    CHECK(loaded.error().path == ckpt.shards()[0].path);
    CHECK(loaded.error().detail.find("offset") != std::string::npos);
  }
  for (unsigned depth : {1u, 64u}) {
    INFO("truncated shard: kTruncated with file, offset and length; depth " << depth);
    Checkpoint ckpt = WriteShards(dir / ("trunc" + std::to_string(depth)),
                                  {{{"s0.w", DType::kU8, {64 << 10}}}}, rng);
    const TensorInfo* big = ckpt.Find("s0.w");
    REQUIRE(big != nullptr);
    // Cut the file 40 KiB into the big tensor: the chunk at +32 KiB reads
    // 8 KiB and then meets the end of the file; the one at +48 KiB gets 0.
    REQUIRE(::truncate(ckpt.shards()[0].path.c_str(),
                       static_cast<off_t>(big->offset + (40 << 10))) == 0);
    auto loader = Loader::Open(ckpt, Options(backend, direct, 1, depth));
    auto loaded = loader->Load();
    if (!loaded && direct && SkipIfNoDirect(loaded.error())) return;
    REQUIRE(!loaded);
    const Error& e = loaded.error();
    CHECK(e.code == ErrorCode::kTruncated);
    CHECK(e.path == ckpt.shards()[0].path);
    CHECK(e.tensor == "s0.w");
    CHECK(e.detail.find("bytes at offset") != std::string::npos);
    CHECK(e.detail.find("the file now has " + std::to_string(big->offset + (40 << 10))) !=
          std::string::npos);
    if (!direct && depth == 1) {
      // In order, one read at a time: the first failure is the chunk at +32 KiB.
      std::string want = "read of 16384 bytes at offset " +
                         std::to_string(big->offset + (32 << 10)) + " needs 16384 bytes, got 8192";
      CHECK_MESSAGE(e.detail.find(want) != std::string::npos, e.detail);
    }
  }
  {
    INFO("two workers failing: one error reported, the others counted or cancelled");
    Checkpoint ckpt = SmallCheckpoint(dir / "two", 2, 64 << 10, rng);
    for (const ShardInfo& s : ckpt.shards()) {
      REQUIRE(::truncate(s.path.c_str(), static_cast<off_t>(s.data_offset + 100)) == 0);
    }
    auto loader = Loader::Open(ckpt, Options(backend, direct, 2, 4));
    auto loaded = loader->Load();
    REQUIRE(!loaded);
    CHECK(loaded.error().code == ErrorCode::kTruncated);
    bool named = loaded.error().path == ckpt.shards()[0].path ||
                 loaded.error().path == ckpt.shards()[1].path;
    CHECK(named);
  }
  {
    INFO("bad destinations");
    Checkpoint ckpt = SmallCheckpoint(dir / "dest", 1, 100, rng);
    auto loader = Loader::Open(ckpt, Options(backend, direct, 1, 4));
    std::vector<std::byte> buf(200);
    Destination unknown[] = {{"nope", buf.data(), 100}};
    CHECK(loader->LoadInto(unknown).error().code == ErrorCode::kTensorNotFound);
    Destination wrong_size[] = {{"s0.w", buf.data(), 99}};
    CHECK(loader->LoadInto(wrong_size).error().code == ErrorCode::kInvalidArgument);
    Destination null_data[] = {{"s0.w", nullptr, 100}};
    CHECK(loader->LoadInto(null_data).error().code == ErrorCode::kInvalidArgument);
    Destination overlap[] = {{"s0.w", buf.data(), 100}, {"s0.b", buf.data() + 90, 12}};
    CHECK(loader->LoadInto(overlap).error().code == ErrorCode::kInvalidArgument);
    Selection unknown_sel;
    unknown_sel.names = {"nope"};
    CHECK(loader->Load(unknown_sel).error().code == ErrorCode::kTensorNotFound);
  }
  CHECK(OpenFdCount() == fds_before);
}

void CheckReload(Backend backend, bool direct) {
  std::mt19937_64 rng(Seed() + 7);
  TempDir dir;
  Checkpoint ckpt =
      WriteShards(dir.path(), {RandomTensors(rng, 24, 0, 40000), TinyTensors(50)}, rng);
  auto loader = Loader::Open(ckpt, Options(backend, direct, 2, 16));
  REQUIRE(loader);
  auto loaded = loader->Load();
  if (!loaded && direct && SkipIfNoDirect(loaded.error())) return;
  REQUIRE(loaded);
  // Same layout, new bytes: overwrite every shard's data area in place.
  for (const ShardInfo& s : ckpt.shards()) {
    std::string file = ReadFile(s.path);
    std::string fresh = RandomBytes(rng, file.size() - s.data_offset);
    file.replace(s.data_offset, fresh.size(), fresh);
    WriteFile(s.path, file);
  }
  for (const LoadedTensor& t : loaded->tensors()) std::memset(t.data.data(), 0, t.data.size());
  Status reloaded = loader->Reload(*loaded);
  REQUIRE_MESSAGE(reloaded, shardload::test::ErrorText(reloaded));
  std::uint64_t bytes = 0;
  for (const LoadedTensor& t : loaded->tensors()) {
    std::string want = OracleRead(ckpt, *ckpt.Find(t.name));
    if (std::memcmp(t.data.data(), want.data(), want.size()) != 0) {
      FAIL("reloaded tensor " << t.name << " differs");
    }
    bytes += t.data.size();
  }
  CHECK(loaded->stats().bytes == bytes);
  LoadedCheckpoint empty;
  CHECK(loader->Reload(empty).error().code == ErrorCode::kInvalidArgument);
}

}  // namespace shardload::test
