// A checkpoint is the files it was opened from (issue 27, item 4): a shard
// renamed over after Checkpoint::Open (same size, two tensors' offsets
// swapped, new bytes: how a Hugging Face cache snapshot is updated) is read
// from the file whose header was parsed, by every read path (both backends,
// buffered, O_DIRECT reopened through /proc/self/fd, mapped, load --verify,
// ByteRanges), between and during loads; a shard changed in place is refused
// naming it; past the descriptor budget a replaced shard is refused. The
// oracle: the original file's bytes, read by plain pread before the rename.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>

#include "io/completion.h"
#include "io/fault_support.h"
#include "io/load_harness.h"
#include "loader/backend_override.h"

namespace shardload::test {
namespace {

constexpr std::uint64_t kBytes = 3 * 4096 + 123;  // per swapped tensor

std::string Random(std::mt19937_64& rng, std::uint64_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A shard holding U8 tensors "a" and "b" of kBytes each and "c": a before b
// in the file, or (SWAPPED) b before a; the header has the same length.
std::string Shard(bool swapped, const std::string& a, const std::string& b,
                  const std::string& c) {
  const std::string n = std::to_string(kBytes), n2 = std::to_string(2 * kBytes);
  auto entry = [](const std::string& name, std::uint64_t size, const std::string& from,
                  const std::string& to) {
    return "\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(size) +
           "],\"data_offsets\":[" + from + "," + to + "]}";
  };
  const std::string end = std::to_string(2 * kBytes + c.size());
  std::string json = "{" + entry("a", kBytes, swapped ? n : "0", swapped ? n2 : n) + "," +
                     entry("b", kBytes, swapped ? "0" : n, swapped ? n : n2) + "," +
                     entry("c", c.size(), n2, end) + "}";
  while ((8 + json.size()) % 8 != 0) json += ' ';
  return RawSafetensors(json, (swapped ? b + a : a + b) + c);
}

// dir/shard-0.safetensors (a, b, c) and dir/shard-1.safetensors (d); the
// replacement of shard 0 is written to dir/new.tmp, ready to be renamed.
struct Fixture {
  TempDir dir;
  std::string shard0 = dir / "shard-0.safetensors";
  std::string replacement = dir / "new.tmp";
  std::map<std::string, std::string> oracle;  // name -> bytes of the opened files

  explicit Fixture(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    const std::string a = Random(rng, kBytes), b = Random(rng, kBytes), c = Random(rng, 999);
    WriteFile(shard0, Shard(false, a, b, c));
    WriteFile(dir / "shard-1.safetensors", RawSafetensors(
        "{\"d\":{\"dtype\":\"U8\",\"shape\":[5000],\"data_offsets\":[0,5000]}}   ",
        Random(rng, 5000)));
    WriteFile(replacement, Shard(true, Random(rng, kBytes), Random(rng, kBytes), c));
  }
  Checkpoint Open() {
    auto ckpt = Checkpoint::Open(dir.path());
    REQUIRE_MESSAGE(ckpt, ErrorText(ckpt));
    oracle.clear();
    for (const TensorInfo& t : ckpt->tensors()) {
      auto bytes = PreadBytes(ckpt->shards()[t.shard].path, t.offset, t.size);
      oracle[t.name] = std::string(bytes.begin(), bytes.end());
    }
    return *ckpt;
  }
  // Renames the replacement over shard 0; its bytes at a's and b's old
  // offsets differ from the oracle (so that reading them would be seen).
  void Replace(const Checkpoint& ckpt) {
    REQUIRE(::rename(replacement.c_str(), shard0.c_str()) == 0);
    for (const char* name : {"a", "b"}) {
      const TensorInfo* t = ckpt.Find(name);
      auto now = PreadBytes(shard0, t->offset, t->size);
      REQUIRE(std::string(now.begin(), now.end()) != oracle.at(name));
    }
  }
  // Every loaded tensor equals the oracle.
  void Check(const LoadedCheckpoint& loaded) const {
    CHECK(loaded.tensors().size() == oracle.size());
    for (const LoadedTensor& t : loaded.tensors()) {
      CAPTURE(t.name);
      const std::string& want = oracle.at(t.name);
      REQUIRE(t.data.size() == want.size());
      CHECK(std::memcmp(t.data.data(), want.data(), want.size()) == 0);
    }
  }
};

bool NoDirect(const Error& e) {
  if (e.code != ErrorCode::kUnsupported) return false;
  MESSAGE("O_DIRECT unsupported here, skipped: " << e.ToString());
  return true;
}

LoadOptions Options(Backend backend, IoMode mode, ReadStrategy strategy) {
  LoadOptions o;
  o.backend = backend;
  o.mode = mode;
  o.read_strategy = strategy;
  o.threads = 2;
  o.chunk_size = 8 << 10;
  return o;
}

TEST_CASE("a shard renamed over between Open and Load is read from the file opened") {
  for (Backend backend : {Backend::kPread, Backend::kIoUring}) {
    if (backend == Backend::kIoUring && NoIoUring()) continue;
    for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect, IoMode::kAuto}) {
      for (ReadStrategy strategy : {ReadStrategy::kAuto, ReadStrategy::kMapped}) {
        if (strategy == ReadStrategy::kMapped && mode == IoMode::kDirect) continue;
        CAPTURE(static_cast<int>(backend));
        CAPTURE(static_cast<int>(mode));
        CAPTURE(static_cast<int>(strategy));
        Fixture f(Seed() + 1);
        const Checkpoint ckpt = f.Open();
        f.Replace(ckpt);
        auto loader = Loader::Open(ckpt, Options(backend, mode, strategy));
        REQUIRE(loader);
        auto loaded = loader->Load();
        if (!loaded && mode == IoMode::kDirect && NoDirect(loaded.error())) continue;
        REQUIRE_MESSAGE(loaded, ErrorText(loaded));
        f.Check(*loaded);
      }
    }
  }
}

TEST_CASE("Reload after a rename reads the opened file; a new Open reads the new one") {
  for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
    CAPTURE(static_cast<int>(mode));
    Fixture f(Seed() + 2);
    const Checkpoint ckpt = f.Open();
    auto loader = Loader::Open(ckpt, Options(Backend::kAuto, mode, ReadStrategy::kAuto));
    REQUIRE(loader);
    auto loaded = loader->Load();
    if (!loaded && mode == IoMode::kDirect && NoDirect(loaded.error())) continue;
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    f.Replace(ckpt);
    for (const LoadedTensor& t : loaded->tensors()) std::memset(t.data.data(), 0, t.data.size());
    Status again = loader->Reload(*loaded);
    REQUIRE_MESSAGE(again, ErrorText(again));
    f.Check(*loaded);
    // The copy of the checkpoint kept by the loader outlives this one too.
    const Checkpoint fresh = f.Open();  // the oracle now holds the new file's bytes
    auto now = Loader::Open(fresh, Options(Backend::kAuto, mode, ReadStrategy::kAuto));
    REQUIRE(now);
    auto reread = now->Load();
    REQUIRE_MESSAGE(reread, ErrorText(reread));
    f.Check(*reread);
  }
}

TEST_CASE("ByteRanges and load --verify read the opened file after a rename") {
  Fixture f(Seed() + 3);
  const std::string manifest = f.dir / "manifest.sha256";
  WriteFile(manifest, Sha256sum(f.shard0) + "  shard-0.safetensors\n" +
                          Sha256sum(f.dir / "shard-1.safetensors") + "  shard-1.safetensors\n");
  const Checkpoint ckpt = f.Open();
  f.Replace(ckpt);
  // Whole shards hashed from the loaded bytes, and a selection whose shard
  // is hashed by reading it again.
  for (bool whole : {true, false}) {
    CAPTURE(whole);
    LoadOptions o = Options(Backend::kAuto, IoMode::kBuffered, ReadStrategy::kAuto);
    o.verify = manifest;
    auto loader = Loader::Open(ckpt, o);
    REQUIRE(loader);
    auto loaded = whole ? loader->Load() : loader->Load(Selection{{"a"}, {}});
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    CHECK(std::memcmp(loaded->Find("a")->data.data(), f.oracle.at("a").data(), kBytes) == 0);
  }
  const TensorInfo* b = ckpt.Find("b");
  const std::uint64_t offsets[] = {b->offset + 7};
  const std::uint64_t lengths[] = {100};
  auto ranges = ckpt.ByteRanges(b->shard, offsets, lengths);
  REQUIRE_MESSAGE(ranges, ErrorText(ranges));
  auto loader = Loader::Open(*ranges);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE_MESSAGE(loaded, ErrorText(loaded));
  CHECK(std::memcmp(loaded->Find("0")->data.data(), f.oracle.at("b").data() + 7, 100) == 0);
}

// Renames the replacement over the shard at the first result of any read.
class RenamingFilter final : public CompletionFilter {
 public:
  explicit RenamingFilter(const Fixture& f) : f_(f) {}
  std::int64_t Rewrite(const ReadOp&, const OpCursor&, std::byte*, std::int64_t res) override {
    if (!renamed_.exchange(true)) {
      CHECK(::rename(f_.replacement.c_str(), f_.shard0.c_str()) == 0);
    }
    return res;
  }
  void Arrive(std::uint64_t user_data, std::int32_t res) override {
    arrived_.emplace_back(user_data, res);
  }
  bool Next(unsigned, std::uint64_t* user_data, std::int32_t* res) override {
    if (arrived_.empty()) return false;
    std::tie(*user_data, *res) = arrived_.back();
    arrived_.pop_back();
    return true;
  }
  static inline std::atomic<bool> renamed_{false};

 private:
  const Fixture& f_;
  std::vector<std::pair<std::uint64_t, std::int32_t>> arrived_;
};

class RenamingBackend final : public IoBackend {
 public:
  RenamingBackend(const IoBackend& inner, const Fixture& f) : inner_(inner), f_(f) {}
  Status Execute(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats) const override {
    RenamingFilter filter(f_);
    ExecContext filtered = ctx;
    filtered.filter = &filter;
    return inner_.Execute(ops, filtered, stats);
  }
  const char* name() const override { return inner_.name(); }

 private:
  const IoBackend& inner_;
  const Fixture& f_;
};

TEST_CASE("a shard renamed over during a load: every byte from the file opened") {
  for (Backend backend : {Backend::kPread, Backend::kIoUring}) {
    if (backend == Backend::kIoUring && NoIoUring()) continue;
    CAPTURE(static_cast<int>(backend));
    Fixture f(Seed() + 4);
    const Checkpoint ckpt = f.Open();
    RenamingFilter::renamed_ = false;
    RenamingBackend renaming(RealBackend(backend), f);
    ScopedBackendOverride use(renaming);
    auto loader = Loader::Open(ckpt, Options(backend, IoMode::kBuffered, ReadStrategy::kExact));
    REQUIRE(loader);
    auto loaded = loader->Load();
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    CHECK(RenamingFilter::renamed_.load());
    f.Check(*loaded);
  }
}

// Sets the modification time of PATH SECONDS later than it is.
void Touch(const std::string& path, int seconds) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  times[1].tv_sec += seconds;
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

TEST_CASE("a shard changed in place after Open is refused, naming it") {
  struct Change {
    const char* what;
    ErrorCode code;
  };
  for (const Change& change : {Change{"rewritten, same size", ErrorCode::kShardChanged},
                               Change{"grown", ErrorCode::kShardChanged},
                               Change{"cut", ErrorCode::kTruncated}}) {
    for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
      CAPTURE(change.what);
      CAPTURE(static_cast<int>(mode));
      Fixture f(Seed() + 5);
      const Checkpoint ckpt = f.Open();
      const std::string what = change.what;
      const std::uint64_t size = ckpt.shards()[0].file_size;
      if (what == "grown") {
        REQUIRE(::truncate(f.shard0.c_str(), static_cast<off_t>(size + 1)) == 0);
      } else if (what == "cut") {
        REQUIRE(::truncate(f.shard0.c_str(), static_cast<off_t>(size - 1)) == 0);
      } else {
        const std::string bytes = ReadFile(f.replacement);
        const int fd = ::open(f.shard0.c_str(), O_WRONLY);
        REQUIRE(fd >= 0);
        REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(size));
        ::close(fd);
      }
      Touch(f.shard0, 5);  // a distinct time, whatever the clock's granularity
      auto loader = Loader::Open(ckpt, Options(Backend::kAuto, mode, ReadStrategy::kAuto));
      REQUIRE(loader);
      auto loaded = loader->Load();
      REQUIRE_FALSE(loaded);
      INFO(loaded.error().ToString());
      CHECK(loaded.error().code == change.code);
      CHECK(loaded.error().path == f.shard0);
    }
  }
}

// Lowers the soft RLIMIT_NOFILE while it lives so that the next descriptor
// opened is past the budget (index/shard_file.h: half the soft limit), with
// room for a few more (descriptors below 16 are taken up first).
class ScopedLowFdLimit {
 public:
  ScopedLowFdLimit() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    int next = ::dup(0);
    while (next >= 0 && next < 16) {
      padding_.push_back(next);
      next = ::dup(0);
    }
    REQUIRE(next >= 0);
    ::close(next);
    struct rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(2 * next);  // next >= soft / 2
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  }
  ~ScopedLowFdLimit() {
    ::setrlimit(RLIMIT_NOFILE, &saved_);
    for (int fd : padding_) ::close(fd);
  }

 private:
  struct rlimit saved_ {};
  std::vector<int> padding_;
};

TEST_CASE("past the descriptor budget: loads check each shard's identity at open") {
  for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
    CAPTURE(static_cast<int>(mode));
    Fixture f(Seed() + 6);
    const int before = OpenFdCount();
    std::optional<Checkpoint> ckpt;
    {
      ScopedLowFdLimit low;
      ckpt = f.Open();
    }
    CHECK(OpenFdCount() == before);  // nothing kept
    auto loader = Loader::Open(*ckpt, Options(Backend::kAuto, mode, ReadStrategy::kAuto));
    REQUIRE(loader);
    auto loaded = loader->Load();
    if (!loaded && mode == IoMode::kDirect && NoDirect(loaded.error())) continue;
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    f.Check(*loaded);
    REQUIRE(::rename(f.replacement.c_str(), f.shard0.c_str()) == 0);
    Status again = loader->Reload(*loaded);
    REQUIRE_FALSE(again);
    INFO(again.error().ToString());
    CHECK(again.error().code == ErrorCode::kShardChanged);
    CHECK(again.error().path == f.shard0);
    CHECK(again.error().detail.find("another file") != std::string::npos);
  }
}

TEST_CASE("within the budget a checkpoint keeps one descriptor per shard, shared by copies") {
  Fixture f(Seed() + 7);
  const int before = OpenFdCount();
  {
    const Checkpoint ckpt = f.Open();
    CHECK(OpenFdCount() == before + 2);
    const Checkpoint copy = ckpt;
    CHECK(OpenFdCount() == before + 2);
    auto loader = Loader::Open(copy);
    REQUIRE(loader);
    auto loaded = loader->Load();
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    CHECK(OpenFdCount() == before + 2);  // the load's own descriptors are closed
  }
  CHECK(OpenFdCount() == before);
}

}  // namespace
}  // namespace shardload::test
