// A shard truncated while a load is running (issue #5) gives kTruncated
// naming the shard and a tensor: no SIGBUS (mapped reads recover it, below)
// and no garbage reported as loaded. In the library cases the truncation is
// deterministic: a CompletionFilter truncates the shard at the first result
// of a read of it, while the other reads of that shard are in flight or yet
// to come, on both backends, buffered and O_DIRECT. The CLI case truncates a
// shard while `shardload load --repeat` reloads it and expects exit code 3.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <thread>
#include <utility>

#include "io/completion.h"
#include "io/fault_support.h"
#include "io/faulty_backend.h"
#include "io/load_harness.h"
#include "loader/backend_override.h"

namespace shardload::test {
namespace {

// What to truncate and when; shared by the workers of one load.
struct Truncation {
  std::uint32_t file = 0;
  std::string path;
  off_t size = 0;
  std::atomic<bool> fired{false};
  std::atomic<int> error{0};  // errno of truncate(2), checked by the test thread
};

// Truncates at the first result of a read of `file` (in whichever worker),
// then passes every result on unchanged, in arrival order.
class TruncatingFilter final : public CompletionFilter {
 public:
  explicit TruncatingFilter(Truncation& t) : t_(t) {}

  std::int64_t Rewrite(const ReadOp& op, const OpCursor&, std::byte*, std::int64_t res) override {
    if (op.file == t_.file && !t_.fired.exchange(true)) {
      if (::truncate(t_.path.c_str(), t_.size) != 0) t_.error.store(errno);
    }
    return res;
  }
  void Arrive(std::uint64_t user_data, std::int32_t res) override {
    fifo_.emplace_back(user_data, res);
  }
  bool Next(unsigned, std::uint64_t* user_data, std::int32_t* res) override {
    if (fifo_.empty()) return false;
    std::tie(*user_data, *res) = fifo_.front();
    fifo_.pop_front();
    return true;
  }

 private:
  Truncation& t_;
  std::deque<std::pair<std::uint64_t, std::int32_t>> fifo_;
};

class TruncatingBackend final : public IoBackend {
 public:
  TruncatingBackend(const IoBackend& inner, Truncation& t) : inner_(inner), t_(t) {}
  Status Execute(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats) const override {
    TruncatingFilter filter(t_);
    ExecContext filtered = ctx;
    filtered.filter = &filter;
    return inner_.Execute(ops, filtered, stats);
  }
  const char* name() const override { return inner_.name(); }

 private:
  const IoBackend& inner_;
  Truncation& t_;
};

constexpr std::uint64_t kShardBytes = 3 << 20;

// Two shards of one 3 MiB tensor (plus a small one) each.
Checkpoint TwoBigShards(const std::string& dir) {
  std::mt19937_64 rng(MixSeed(Seed(), 31));
  return WriteShards(dir,
                     {{{"a.w", DType::kU8, {kShardBytes}}, {"a.b", DType::kF32, {7}}},
                      {{"b.w", DType::kU8, {kShardBytes}}, {"b.b", DType::kF32, {5}}}},
                     rng);
}

// Loads a fresh TwoBigShards checkpoint, truncating shard 1 to `keep` bytes of
// data at the first result of a read of it.
Result<LoadedCheckpoint> LoadTruncating(const Checkpoint& ckpt, Backend backend, bool direct,
                                        unsigned threads, unsigned depth, std::uint64_t keep,
                                        Truncation& t) {
  LoadOptions o;
  o.backend = backend;
  o.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
  o.threads = threads;
  o.queue_depth = depth;
  o.chunk_size = 64 << 10;
  auto loader = Loader::Open(ckpt, o);
  REQUIRE_MESSAGE(loader, shardload::test::ErrorText(loader));
  t.file = 1;
  t.path = ckpt.shards()[1].path;
  t.size = static_cast<off_t>(ckpt.shards()[1].data_offset + keep);
  TruncatingBackend truncating(RealBackend(backend), t);
  ScopedBackendOverride use(truncating);
  Watchdog dog(std::chrono::seconds(60));
  Watchdog::Scope armed(dog, "load truncated under it");
  return loader->Load();
}

void CheckTruncatedUnderLoad(Backend backend) {
  for (bool direct : {false, true}) {
    if (direct && !DirectIoWorks()) continue;
    for (unsigned threads : {1u, 2u}) {
      for (unsigned depth : {1u, 16u}) {
        CAPTURE(direct);
        CAPTURE(threads);
        CAPTURE(depth);
        TempDir dir;
        const Checkpoint ckpt = TwoBigShards(dir.path());
        const std::uint64_t keep = (1 << 20) + 123;  // a third of the big tensor
        const int fds_before = OpenFdCount();
        Truncation t;
        auto loaded = LoadTruncating(ckpt, backend, direct, threads, depth, keep, t);
        CHECK(OpenFdCount() == fds_before);
        REQUIRE(t.fired.load());
        REQUIRE(t.error.load() == 0);
        REQUIRE_MESSAGE(!loaded, "a load of a shard truncated under it succeeded");
        const Error& e = loaded.error();
        INFO(e.ToString());
        CHECK(e.code == ErrorCode::kTruncated);
        CHECK(e.path == ckpt.shards()[1].path);
        // Error::offset: where the failing read found nothing, at or past the
        // new end of the file and before the old one.
        REQUIRE(e.offset.has_value());
        CHECK(*e.offset >= static_cast<std::uint64_t>(t.size));
        CHECK(*e.offset < ckpt.shards()[1].file_size);
        const TensorInfo* tensor = ckpt.Find(e.tensor);
        REQUIRE(tensor != nullptr);
        CHECK(tensor->shard == 1);
        CHECK(e.detail.find("the file now has " + std::to_string(t.size) + " bytes") !=
              std::string::npos);
      }
    }
  }
  INFO("control: the same hook without a real truncation loads byte-exact");
  TempDir dir;
  const Checkpoint ckpt = TwoBigShards(dir.path());
  Truncation t;
  auto loaded = LoadTruncating(ckpt, backend, false, 2, 16, kShardBytes + 20, t);
  REQUIRE_MESSAGE(loaded, shardload::test::ErrorText(loaded));
  for (const LoadedTensor& lt : loaded->tensors()) {
    const std::string want = OracleRead(ckpt, *ckpt.Find(lt.name));
    CHECK(std::memcmp(lt.data.data(), want.data(), want.size()) == 0);
  }
}

TEST_CASE("shard truncated during a load, pread: kTruncated naming it") {
  CheckTruncatedUnderLoad(Backend::kPread);
}
TEST_CASE("shard truncated during a load, io_uring: kTruncated naming it" *
          doctest::skip(NoIoUring())) {
  CheckTruncatedUnderLoad(Backend::kIoUring);
}

// Mapped reads (ReadStrategy::kMapped) copy out of a mapping of the shard:
// a shard cut under it raises SIGBUS on the pages past the new end, which
// the load must turn into kTruncated naming the shard and the tensor, not a
// crash. One worker, reads in file order: the first read of shard 0 cuts
// shard 1, whose row-split tensor is then mapped and copied.
void CheckMappedTruncated(Backend backend) {
  for (const std::uint64_t keep : {std::uint64_t{0}, std::uint64_t{100000}}) {
    CAPTURE(keep);
    TempDir dir;
    std::mt19937_64 rng(MixSeed(Seed(), 32));
    const Checkpoint ckpt = WriteShards(
        dir.path(), {{{"a.w", DType::kU8, {1 << 16}}}, {{"b.w", DType::kU8, {1024, 1024}}}}, rng);
    LoadOptions o;
    o.backend = backend;
    o.mode = IoMode::kBuffered;
    o.threads = 1;
    o.queue_depth = 1;
    o.read_strategy = ReadStrategy::kMapped;
    auto loader = Loader::Open(ckpt, o);
    REQUIRE_MESSAGE(loader, shardload::test::ErrorText(loader));
    const TensorInfo* bw = ckpt.Find("b.w");
    REQUIRE(bw != nullptr);
    // Rank 1 of 4 of b.w split by rows (its columns): 1024 runs of 256 bytes,
    // 1024 apart, one window of the covering range.
    const TensorParallel tp{1, 4, PlanSource::Json(
        R"({"tp_plan_version": 1, "rules": [{"match": "b.w", "split": "row"}]})")};
    auto planned = loader->Plan({}, tp);
    REQUIRE(planned);
    for (const PlannedTensor& t : planned->tensors) {
      if (t.name == "b.w") CHECK(t.strategy == "mapped");
    }
    Truncation t;
    t.file = 0;  // the trigger: the first read of shard 0
    t.path = ckpt.shards()[1].path;
    t.size = static_cast<off_t>(bw->offset + keep);
    TruncatingBackend truncating(RealBackend(backend), t);
    ScopedBackendOverride use(truncating);
    Watchdog dog(std::chrono::seconds(60));
    Watchdog::Scope armed(dog, "mapped load truncated under it");
    auto loaded = loader->Load({}, tp);
    REQUIRE(t.fired.load());
    REQUIRE(t.error.load() == 0);
    REQUIRE_MESSAGE(!loaded, "a mapped load of a shard truncated under it succeeded");
    const Error& e = loaded.error();
    INFO(e.ToString());
    CHECK(e.code == ErrorCode::kTruncated);
    CHECK(e.path == ckpt.shards()[1].path);
    CHECK(e.tensor == "b.w");
    REQUIRE(e.offset.has_value());
    CHECK(*e.offset >= static_cast<std::uint64_t>(t.size));
    CHECK(*e.offset < bw->offset + bw->size);
    CHECK(e.detail.find("the file now has " + std::to_string(t.size) + " bytes") !=
          std::string::npos);
  }
}

TEST_CASE("shard truncated under a mapped read, pread: kTruncated naming it, no SIGBUS") {
  CheckMappedTruncated(Backend::kPread);
}
TEST_CASE("shard truncated under a mapped read, io_uring: kTruncated naming it, no SIGBUS" *
          doctest::skip(NoIoUring())) {
  CheckMappedTruncated(Backend::kIoUring);
}

#ifdef SHARDLOAD_CLI
// The CLI reloads until the shard is cut: whether the cut lands before the
// checkpoint is opened (incomplete_buffer) or during a load (truncated), the
// exit code is 3 (docs/errors.md) and the message names the shard.
TEST_CASE("CLI: a shard truncated under `shardload load --repeat` exits 3 naming it") {
  TempDir dir;
  const Checkpoint ckpt = TwoBigShards(dir / "ckpt");
  const std::string cmd = std::string(SHARDLOAD_CLI) + " load " + dir / "ckpt" +
                          " --repeat 1000000 --threads 2 2>" + dir / "stderr.txt";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // usually mid-reload by now
  const ShardInfo& shard = ckpt.shards()[1];
  REQUIRE(::truncate(shard.path.c_str(), static_cast<off_t>(shard.data_offset + 1000)) == 0);
  std::array<char, 4096> buf;
  while (std::fread(buf.data(), 1, buf.size(), pipe) > 0) {
  }
  const int status = ::pclose(pipe);
  const std::string err = ReadFile(dir / "stderr.txt");
  INFO(err);
  REQUIRE_MESSAGE(WIFEXITED(status), "killed by a signal");
  CHECK(WEXITSTATUS(status) == 3);
  CHECK(err.find(shard.path) != std::string::npos);
  const bool during = err.find("(error: truncated)") != std::string::npos;
  const bool before = err.find("(error: incomplete_buffer)") != std::string::npos;
  CHECK((during || before));
  MESSAGE("the cut landed "
          << std::string(during ? "during a load" : "before the checkpoint was opened"));
}
#endif

}  // namespace
}  // namespace shardload::test

namespace shardload::test {
namespace {

// The checkpoint was described, then a shard was swapped for something that
// is not a regular file: the load must fail naming it, and must not block
// (opening a FIFO for reading waits for a writer).
TEST_CASE("a shard replaced by a FIFO or a device after it was described: no hang") {
  for (Backend backend : {Backend::kPread, Backend::kIoUring}) {
    if (backend == Backend::kIoUring && NoIoUring()) continue;
    for (const char* kind : {"fifo", "/dev/zero"}) {
      CAPTURE(kind);
      TempDir dir;
      const Checkpoint ckpt = TwoBigShards(dir.path());
      const std::string path = ckpt.shards()[1].path;
      std::filesystem::remove(path);
      if (std::string(kind) == "fifo") {
        REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
      } else {
        std::filesystem::create_symlink(kind, path);
      }
      LoadOptions o;
      o.backend = backend;
      auto loader = Loader::Open(ckpt, o);
      REQUIRE(loader);
      Watchdog dog(std::chrono::seconds(30));
      Watchdog::Scope armed(dog, std::string("load of a shard swapped for ") + kind);
      auto loaded = loader->Load();
      REQUIRE_MESSAGE(!loaded, "a load of a shard that is not a regular file succeeded");
      INFO(loaded.error().ToString());
      CHECK(loaded.error().code == ErrorCode::kNotRegularFile);
      CHECK(loaded.error().path == path);
    }
  }
}

}  // namespace
}  // namespace shardload::test
