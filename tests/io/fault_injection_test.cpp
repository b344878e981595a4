// Fault injection (issue #5): seeded loads of small random checkpoints
// through FaultyBackend, on both backends, buffered and O_DIRECT, queue depth
// 1 and 64, 1, 2 and 8 threads, into library memory, caller buffers, library
// memory again (Reload) or one tensor-parallel rank's slices, with the page
// cache warm or cold. Each load must either deliver exactly the
// oracle's bytes, with stats equal to what the completion policy was handed,
// or fail with the error of an injected non-retryable fault (its file, the
// read's offset and length, its errno). No load may hang, leak a descriptor
// or a thread, or succeed after a non-retryable fault.
//
// Replay: a failure prints its case ("case seed=C ..."). SHARDLOAD_FAULT_CASE=C
// runs only that case (in each test case below); SHARDLOAD_TEST_SEED=S reruns
// the whole sequence; SHARDLOAD_FAULT_CASES=N sets the cases per test case
// (default 100, 50 under sanitizers). With one thread the pread backend
// replays exactly; io_uring's batches and several workers' interleaving
// depend on timing, while each worker's fault stream stays the same.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/fault_support.h"
#include "io/faulty_backend.h"
#include "io/load_harness.h"
#include "loader/backend_override.h"

namespace shardload::test {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDefaultCases = 50;
#else
constexpr int kDefaultCases = 100;
#endif

using Oracle = std::map<std::string, std::string>;

// What the faulty load does: Load, LoadInto, Reload after a clean Load, or a
// tensor-parallel Load of rank `rank` of `world`.
enum class Mode { kOwned, kCaller, kReload, kTp };

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kOwned: return "library-memory";
    case Mode::kCaller: return "caller-memory";
    case Mode::kReload: return "reload";
    case Mode::kTp: return "tensor-parallel";
  }
  return "?";
}

struct Case {
  std::uint64_t seed = 0;
  Backend backend = Backend::kPread;
  bool direct = false;
  unsigned threads = 1;
  unsigned depth = 1;
  std::uint64_t chunk = 4096;
  Mode mode = Mode::kOwned;
  unsigned rank = 0, world = 1;  // kTp
  ReadStrategy strategy = ReadStrategy::kAuto;  // kTp: how slices' rows are read
  bool cold = false;  // page cache dropped before the load
  FaultRates rates;
};

std::string Describe(const Case& c) {
  std::ostringstream s;
  s << "case seed=" << c.seed << " (SHARDLOAD_FAULT_CASE=" << c.seed
    << "): " << (c.backend == Backend::kIoUring ? "io_uring" : "pread")
    << (c.direct ? " O_DIRECT" : " buffered") << (c.cold ? " cold" : " warm")
    << " threads=" << c.threads << " depth=" << c.depth << " chunk=" << c.chunk
    << " " << ModeName(c.mode);
  if (c.mode == Mode::kTp) {
    s << " rank " << c.rank << " of " << c.world << " " << ReadStrategyName(c.strategy);
  }
  s << " rates: short "
    << c.rates.short_read << " zero " << c.rates.zero_read << " eagain " << c.rates.eagain
    << " eintr " << c.rates.eintr << " eio " << c.rates.eio << " ecanceled "
    << c.rates.ecanceled << " hold " << c.rates.hold;
  return s.str();
}

template <typename T>
T Pick(std::mt19937_64& rng, std::initializer_list<T> values) {
  return *(values.begin() + rng() % values.size());
}

Case MakeCase(std::uint64_t seed, Backend backend, bool direct) {
  std::mt19937_64 rng(seed);
  Case c;
  c.seed = seed;
  c.backend = backend;
  c.direct = direct;
  c.threads = Pick(rng, {1u, 2u, 8u});
  c.depth = Pick(rng, {1u, 64u});
  c.chunk = Pick<std::uint64_t>(rng, {4096, 16384, 65536});
  switch (rng() % 6) {
    case 0:
    case 1: c.mode = Mode::kCaller; break;
    case 2: c.mode = Mode::kReload; break;
    case 3:
      c.mode = Mode::kTp;
      c.world = Pick(rng, {2u, 3u, 4u});
      c.rank = static_cast<unsigned>(rng() % c.world);
      c.strategy = Pick(rng, {ReadStrategy::kAuto, ReadStrategy::kExact, ReadStrategy::kStaged,
                              ReadStrategy::kStaged, ReadStrategy::kMixed, ReadStrategy::kMapped});
      break;
    default: c.mode = Mode::kOwned;
  }
  c.cold = rng() % 2 == 0;
  FaultRates& r = c.rates;
  r.short_read = Pick(rng, {0.0, 0.1, 0.3, 0.6});
  r.eagain = Pick(rng, {0.0, 0.05, 0.2});
  r.eintr = Pick(rng, {0.0, 0.05, 0.2});
  r.hold = backend == Backend::kIoUring ? Pick(rng, {0.0, 0.3, 0.7}) : 0.0;
  if (rng() % 5 >= 2) {  // 3 in 5 cases may fail
    const double fatal = Pick(rng, {0.002, 0.01, 0.03, 0.1});
    double w[3];
    for (double& x : w) x = 0.1 + static_cast<double>(rng() % 10);
    const double sum = w[0] + w[1] + w[2];
    r.zero_read = fatal * w[0] / sum;
    r.eio = fatal * w[1] / sum;
    r.ecanceled = fatal * w[2] / sum;
  }
  return c;
}

// 1 to 3 shards of mixed tensors (every dtype, empty, scalar, odd and
// multi-chunk sizes), sometimes plus a run of tiny ones.
Checkpoint RandomCheckpoint(const std::string& dir, std::mt19937_64& rng) {
  std::vector<std::vector<TensorSpec>> shards;
  const int n = 1 + static_cast<int>(rng() % 3);
  for (int k = 0; k < n; ++k) {
    shards.push_back(RandomTensors(rng, 2 + static_cast<int>(rng() % 10), 10 * k,
                                   2048 + rng() % 16384));
  }
  if (rng() % 2 == 0) {
    std::vector<TensorSpec> tiny = TinyTensors(1 + static_cast<int>(rng() % 60));
    std::vector<TensorSpec>& into = shards[rng() % shards.size()];
    into.insert(into.end(), tiny.begin(), tiny.end());
  }
  return WriteShards(dir, shards, rng);
}

// Tensor-parallel cases: 1 to 3 shards of 2-D tensors of odd shapes, split by
// columns (contiguous row blocks of the file) or by rows (one strided segment
// per row), under kTpPlan.
Checkpoint TpCheckpoint(const std::string& dir, std::mt19937_64& rng) {
  std::vector<std::vector<TensorSpec>> shards(1 + rng() % 3);
  int i = 0;
  for (std::vector<TensorSpec>& shard : shards) {
    for (int k = 2 + static_cast<int>(rng() % 4); k > 0; --k, ++i) {
      shard.push_back({"l" + std::to_string(i) + (k % 2 ? ".row" : ".col") + ".weight",
                       Pick(rng, {DType::kF32, DType::kBF16, DType::kU8, DType::kF64}),
                       {1 + rng() % 200, 1 + rng() % 200}});
    }
  }
  return WriteShards(dir, shards, rng);
}

constexpr char kTpPlan[] = R"({"tp_plan_version": 1, "uneven": "chunk", "rules": [
  {"match": "**.col.weight", "split": "col"}, {"match": "**.row.weight", "split": "row"}]})";

// Drops the shards' pages from the page cache, so that buffered io_uring
// reads go to the disk asynchronously instead of completing inline.
void DropCache(const Checkpoint& ckpt) {
  for (const ShardInfo& s : ckpt.shards()) {
    int fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::fdatasync(fd) == 0);
    CHECK(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    ::close(fd);
  }
}

LoadOptions Options(const Case& c) {
  LoadOptions o;
  o.backend = c.backend;
  o.mode = c.direct ? IoMode::kDirect : IoMode::kBuffered;
  o.threads = c.threads;
  o.queue_depth = c.depth;
  o.chunk_size = c.chunk;
  o.read_strategy = c.strategy;
  return o;
}

bool SameBytes(std::span<const std::byte> got, const std::string& want) {
  return got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size()) == 0;
}

// Every tensor of `loaded` holds the oracle's bytes.
void CheckLoaded(const LoadedCheckpoint& loaded, const Oracle& oracle) {
  CHECK(loaded.tensors().size() == oracle.size());
  for (const LoadedTensor& t : loaded.tensors()) {
    if (!SameBytes(t.data, oracle.at(t.name))) FAIL("tensor " << t.name << " differs");
  }
}

// Loads everything (or rank tp's slices) into library memory; on success
// checks every byte.
Result<LoadStats> LoadOwned(Loader& loader, const Oracle& oracle, const TensorParallel& tp = {}) {
  auto loaded = loader.Load({}, tp);
  if (!loaded) return std::move(loaded).error();
  CheckLoaded(*loaded, oracle);
  return loaded->stats();
}

// Reloads `loaded`, whose bytes were overwritten first; on success checks
// every byte.
Result<LoadStats> ReloadOwned(Loader& loader, LoadedCheckpoint& loaded, const Oracle& oracle) {
  if (Status s = loader.Reload(loaded); !s) return std::move(s).error();
  CheckLoaded(loaded, oracle);
  return loaded.stats();
}

// What rank tp gets: its slices from a load without faults (pread, one
// thread, exact reads), the path tests/loader/tp_load_test.cpp checks against
// the independent slicer of tests/tp.
Oracle TpOracle(const Checkpoint& ckpt, const TensorParallel& tp) {
  LoadOptions o;
  o.backend = Backend::kPread;
  o.threads = 1;
  o.read_strategy = ReadStrategy::kExact;
  auto loader = Loader::Open(ckpt, o);
  REQUIRE(loader);
  auto loaded = loader->Load({}, tp);
  REQUIRE_MESSAGE(loaded, shardload::test::ErrorText(loaded));
  Oracle oracle;
  for (const LoadedTensor& t : loaded->tensors()) {
    oracle[t.name].assign(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  }
  return oracle;
}

// Loads everything into one caller buffer, tensors at random misalignments
// between guard bytes; on success checks every byte and every guard.
Result<LoadStats> LoadIntoCaller(Loader& loader, const Oracle& oracle, std::mt19937_64& rng) {
  constexpr std::byte kGuard{0xA5};
  std::vector<std::pair<std::size_t, const std::string*>> at;
  std::vector<std::string> names;
  std::size_t size = 0;
  for (const auto& [name, bytes] : oracle) {
    size += 1 + rng() % 63;
    at.emplace_back(size, &bytes);
    names.push_back(name);
    size += bytes.size();
  }
  std::vector<std::byte> memory(size + 64, kGuard);
  std::vector<Destination> dests;
  for (std::size_t i = 0; i < at.size(); ++i) {
    dests.push_back({names[i], memory.data() + at[i].first, at[i].second->size()});
  }
  std::shuffle(dests.begin(), dests.end(), rng);
  auto stats = loader.LoadInto(dests);
  if (!stats) return stats;
  std::size_t end = 0;
  for (std::size_t i = 0; i <= at.size(); ++i) {
    const std::size_t next = i < at.size() ? at[i].first : memory.size();
    for (std::size_t k = end; k < next; ++k) {
      if (memory[k] != kGuard) FAIL("byte " << k << " outside every destination was written");
    }
    if (i == at.size()) break;
    if (!SameBytes({memory.data() + at[i].first, at[i].second->size()}, *at[i].second)) {
      FAIL("tensor " << names[i] << " differs");
    }
    end = at[i].first + at[i].second->size();
  }
  return stats;
}

std::string ListFaults(const std::vector<InjectedFault>& faults) {
  std::ostringstream s;
  for (const InjectedFault& f : faults) {
    s << "\n  worker " << f.worker << ": " << FaultKindName(f.kind) << " file " << f.file
      << " op [" << f.op_offset << ", +" << f.op_length << ") read at " << f.read_offset
      << ": " << f.system_res << " -> " << f.injected_res;
  }
  return s.str();
}

// The error a fatal fault must produce: its code and errno, the shard, the
// read's offset and length (Error::offset inside that read), and a tensor of
// that shard that the read covers.
bool ErrorMatches(const Error& e, const InjectedFault& f, const Checkpoint& ckpt) {
  const ErrorCode code = f.kind == FaultKind::kZeroRead ? ErrorCode::kTruncated
                                                        : ErrorCode::kIoError;
  const int err = f.kind == FaultKind::kEio ? EIO : f.kind == FaultKind::kEcanceled ? ECANCELED : 0;
  const std::string read = "read of " + std::to_string(f.op_length) + " bytes at offset " +
                           std::to_string(f.op_offset);
  const TensorInfo* t = ckpt.Find(e.tensor);
  return e.code == code && e.sys_errno == err && e.path == ckpt.shards()[f.file].path &&
         e.detail.find(read) != std::string::npos && e.offset.has_value() &&
         *e.offset >= f.op_offset && *e.offset < f.op_offset + f.op_length &&
         t != nullptr && t->shard == f.file &&
         t->offset < f.op_offset + f.op_length && t->offset + t->size > f.op_offset;
}

void CheckFailure(const Error& e, const std::vector<InjectedFault>& faults,
                  const Checkpoint& ckpt) {
  std::vector<InjectedFault> fatal;
  std::copy_if(faults.begin(), faults.end(), std::back_inserter(fatal),
               [](const InjectedFault& f) { return IsFatal(f.kind); });
  const bool matched = std::any_of(fatal.begin(), fatal.end(), [&](const InjectedFault& f) {
    return ErrorMatches(e, f, ckpt);
  });
  CHECK_MESSAGE(matched, "not the error of an injected fault: " << e.ToString()
                                                               << ListFaults(fatal));
  // Each fatal fault failed its worker; the others are counted.
  const std::string more = "(and " + std::to_string(fatal.size() - 1) + " more errors)";
  if (fatal.size() == 1) {
    CHECK(e.detail.find("more errors") == std::string::npos);
  } else {
    CHECK_MESSAGE(e.detail.find(more) != std::string::npos, e.detail);
  }
}

// Mappings (ReadStrategy::kMapped) the load's plan holds: operations with no
// read result, so the filter does not see them.
struct Mappings {
  std::uint64_t ops = 0, bytes = 0;
};

Mappings PlannedMappings(Loader& loader, const Case& c, const TensorParallel& tp) {
  Mappings m;
  if (c.mode != Mode::kTp) return m;
  auto plan = loader.Plan({}, tp);
  REQUIRE_MESSAGE(plan, shardload::test::ErrorText(plan));
  for (const PlannedTensor& t : plan->tensors) {
    // Buffered or O_DIRECT is fixed per case: a mapped tensor's reads are all mappings.
    if (t.strategy == "mapped") m.ops += t.read_ops, m.bytes += t.bytes_read;
  }
  return m;
}

void CheckStats(const LoadStats& stats, const Oracle& oracle, const PolicyInputs& in,
                const Case& c, const Mappings& mapped) {
  std::uint64_t bytes = 0;
  for (const auto& [name, data] : oracle) bytes += data.size();
  CHECK(stats.tensors == oracle.size());
  CHECK(stats.bytes == bytes);
  CHECK(stats.short_reads == in.short_reads);
  CHECK(stats.retries == in.retries);
  CHECK(stats.bytes_read == in.bytes + mapped.bytes);
  CHECK(stats.read_ops == in.first_reads + mapped.ops);
  CHECK(stats.backend == c.backend);
}

// A worker stops at its first fatal fault: nothing of it reaches the policy
// (so nothing is logged for that worker) afterwards.
void CheckStopsAtFirstFatal(const std::vector<InjectedFault>& faults) {
  std::map<unsigned, bool> stopped;
  for (const InjectedFault& f : faults) {
    CHECK_MESSAGE(!stopped[f.worker], "worker " << f.worker << " went on after a fatal fault"
                                                << ListFaults(faults));
    if (IsFatal(f.kind)) stopped[f.worker] = true;
  }
}

struct Tally {
  int cases = 0;
  int loaded = 0;
  int failed = 0;
  int kinds[kNumFaultKinds] = {};
  int modes[4] = {};  // by Mode
  int staged_tp = 0;  // tensor-parallel cases with staged (covering) reads forced
  std::uint64_t held = 0;
  std::uint64_t reaps = 0;
};

void RunCase(const Case& c, Watchdog& dog, Tally& tally) {
  INFO(Describe(c));
  TempDir dir;
  std::mt19937_64 rng(MixSeed(c.seed, 1));
  const Checkpoint ckpt = c.mode == Mode::kTp ? TpCheckpoint(dir.path(), rng)
                                              : RandomCheckpoint(dir.path(), rng);
  TensorParallel tp;
  Oracle oracle;
  if (c.mode == Mode::kTp) {
    tp = {c.rank, c.world, PlanSource::File(dir.path() + "/plan.json")};
    WriteFile(tp.plan.path, kTpPlan);
    oracle = TpOracle(ckpt, tp);
  } else {
    for (const TensorInfo& t : ckpt.tensors()) oracle[t.name] = OracleRead(ckpt, t);
  }
  auto loader = Loader::Open(ckpt, Options(c));
  REQUIRE_MESSAGE(loader, shardload::test::ErrorText(loader));
  LoadedCheckpoint reloaded;
  if (c.mode == Mode::kReload) {  // a clean first load, then other bytes in its place
    auto first = loader->Load();
    REQUIRE_MESSAGE(first, shardload::test::ErrorText(first));
    reloaded = std::move(*first);
    for (const LoadedTensor& t : reloaded.tensors()) {
      std::memset(t.data.data(), 0x5A, t.data.size());
    }
  }
  if (c.cold) DropCache(ckpt);
  FaultyBackend faulty(RealBackend(c.backend), MixSeed(c.seed, 2), c.rates);

  const int fds_before = OpenFdCount();
  std::optional<Result<LoadStats>> result;
  {
    ScopedBackendOverride use(faulty);
    Watchdog::Scope armed(dog, Describe(c));
    switch (c.mode) {
      case Mode::kCaller: result.emplace(LoadIntoCaller(*loader, oracle, rng)); break;
      case Mode::kReload: result.emplace(ReloadOwned(*loader, reloaded, oracle)); break;
      case Mode::kOwned:
      case Mode::kTp: result.emplace(LoadOwned(*loader, oracle, tp)); break;
    }
  }
  CHECK(OpenFdCount() == fds_before);

  const std::vector<InjectedFault> faults = faulty.log().faults();
  INFO("faults injected:" << ListFaults(faults));
  ++tally.cases;
  ++tally.modes[static_cast<int>(c.mode)];
  if (c.mode == Mode::kTp && c.strategy == ReadStrategy::kStaged) ++tally.staged_tp;
  for (const InjectedFault& f : faults) ++tally.kinds[static_cast<int>(f.kind)];
  tally.held += faulty.log().inputs().held;
  tally.reaps += faulty.log().inputs().reaps;
  CheckStopsAtFirstFatal(faults);
  const bool any_fatal = std::any_of(faults.begin(), faults.end(),
                                     [](const InjectedFault& f) { return IsFatal(f.kind); });
  if (any_fatal) {
    ++tally.failed;
    REQUIRE_MESSAGE(!*result, "a load with a non-retryable fault reported success");
    CheckFailure(result->error(), faults, ckpt);
  } else {
    ++tally.loaded;
    REQUIRE_MESSAGE(*result, shardload::test::ErrorText(*result));
    CheckStats(**result, oracle, faulty.log().inputs(), c, PlannedMappings(*loader, c, tp));
  }
}

std::optional<std::uint64_t> ReplayCase() {
  if (const char* s = std::getenv("SHARDLOAD_FAULT_CASE"); s && *s) {
    return std::strtoull(s, nullptr, 0);
  }
  return std::nullopt;
}

int CaseCount() {
  if (const char* s = std::getenv("SHARDLOAD_FAULT_CASES"); s && *s) return std::atoi(s);
  return kDefaultCases;
}

// Many seeded cases of one backend and mode, then coverage: with enough
// cases, loads both succeeded and failed, and io_uring completions were held
// back. (Each fault kind alone is covered by CheckPolicyRows below.)
void RunSeeds(Backend backend, bool direct) {
  if (direct && !DirectIoWorks()) return;
  Watchdog dog(std::chrono::seconds(60));
  Tally tally;
  const std::uint64_t tag = (backend == Backend::kIoUring ? 2 : 0) + (direct ? 1 : 0);
  const std::optional<std::uint64_t> replay = ReplayCase();
  const int cases = replay ? 1 : CaseCount();
  // Warm up the thread pools first, so that growth below would be a leak.
  RunCase(MakeCase(MixSeed(Seed(), 1000 + tag), backend, direct), dog, tally);
  const int threads_before = UserThreadCount();
  for (int i = 0; i < cases; ++i) {
    const std::uint64_t seed = replay ? *replay : MixSeed(MixSeed(Seed(), tag), i);
    Case c = MakeCase(seed, backend, direct);
    RunCase(c, dog, tally);
  }
  if (!replay && tally.staged_tp == 0) {
    // Coverage of faults inside staged ranges, whatever the draw: one more
    // seeded case, tensor parallel with staged reads forced.
    Case c = MakeCase(MixSeed(MixSeed(Seed(), tag), cases), backend, direct);
    c.mode = Mode::kTp;
    c.world = 3;
    c.rank = 1;
    c.strategy = ReadStrategy::kStaged;
    RunCase(c, dog, tally);
  }
  const int threads_after = UserThreadCount();
  CHECK(threads_after <= threads_before + static_cast<int>(std::thread::hardware_concurrency()));
  MESSAGE(tally.cases << " loads: " << tally.loaded << " byte-exact, " << tally.failed
                      << " failed as injected; faults: short " << tally.kinds[0] << ", zero "
                      << tally.kinds[1] << ", EAGAIN " << tally.kinds[2] << ", EINTR "
                      << tally.kinds[3] << ", EIO " << tally.kinds[4] << ", ECANCELED "
                      << tally.kinds[5] << "; io_uring batches " << tally.reaps
                      << ", completions held back " << tally.held << "; loads into library "
                      << "memory " << tally.modes[0] << ", caller memory " << tally.modes[1]
                      << ", reloads " << tally.modes[2] << ", tensor-parallel ranks "
                      << tally.modes[3] << " (staged reads forced in " << tally.staged_tp << ")");
  if (cases >= 50) {
    CHECK(tally.loaded > 0);
    CHECK(tally.failed > 0);
    CHECK(tally.kinds[static_cast<int>(FaultKind::kShortRead)] > 0);
    for (int mode : tally.modes) CHECK(mode > 0);
    CHECK(tally.staged_tp > 0);
    if (backend == Backend::kIoUring && cases >= 100) CHECK(tally.held > 0);
  }
}

TEST_CASE("faults, pread, buffered") { RunSeeds(Backend::kPread, false); }
TEST_CASE("faults, pread, O_DIRECT") { RunSeeds(Backend::kPread, true); }
TEST_CASE("faults, io_uring, buffered" * doctest::skip(NoIoUring())) {
  RunSeeds(Backend::kIoUring, false);
}
TEST_CASE("faults, io_uring, O_DIRECT" * doctest::skip(NoIoUring())) {
  RunSeeds(Backend::kIoUring, true);
}

// --- One fault everywhere: the rows of the completion policy, per backend ----

// One shard, one 40,000-byte tensor, read in 4 KiB chunks by one worker.
class Single {
 public:
  Single() : ckpt_(Make(dir_.path())) {
    for (const TensorInfo& t : ckpt_.tensors()) oracle_[t.name] = OracleRead(ckpt_, t);
  }
  const Checkpoint& ckpt() const { return ckpt_; }

  struct Run {
    Result<LoadStats> result = Error{};
    std::vector<InjectedFault> faults;
    PolicyInputs inputs;
  };
  Run Load(Backend backend, unsigned depth, const FaultRates& rates) const;

 private:
  static Checkpoint Make(const std::string& dir) {
    std::mt19937_64 rng(MixSeed(Seed(), 77));
    return WriteShards(dir, {{{"w", DType::kU8, {40000}}}}, rng);
  }
  TempDir dir_;
  Checkpoint ckpt_;
  Oracle oracle_;
};

Single::Run Single::Load(Backend backend, unsigned depth, const FaultRates& rates) const {
  LoadOptions o;
  o.backend = backend;
  o.threads = 1;
  o.queue_depth = depth;
  o.chunk_size = 4096;
  auto loader = Loader::Open(ckpt_, o);
  REQUIRE(loader);
  FaultyBackend faulty(RealBackend(backend), MixSeed(Seed(), 78), rates);
  Watchdog dog(std::chrono::seconds(60));
  const int fds_before = OpenFdCount();
  Run run;
  {
    ScopedBackendOverride use(faulty);
    Watchdog::Scope armed(dog, "single-fault load");
    run.result = LoadOwned(*loader, oracle_);
  }
  CHECK(OpenFdCount() == fds_before);
  run.faults = faulty.log().faults();
  run.inputs = faulty.log().inputs();
  return run;
}

void CheckPolicyRows(Backend backend) {
  const Single s;
  const std::string& path = s.ckpt().shards()[0].path;
  for (unsigned depth : {1u, 16u}) {
    CAPTURE(depth);
    {
      INFO("EAGAIN without end: kIoError after kMaxRetries retries, no hang");
      FaultRates r;
      r.eagain = 1;
      r.bounded_retries = false;
      Single::Run run = s.Load(backend, depth, r);
      REQUIRE(!run.result);
      CHECK(run.result.error().code == ErrorCode::kIoError);
      CHECK(run.result.error().sys_errno == EAGAIN);
      CHECK(run.result.error().path == path);
      if (depth == 1) CHECK(run.faults.size() == kMaxRetries + 1);  // one read at a time
    }
    // One certain fatal fault each: the first error stops the worker.
    struct Fatal {
      const char* what;
      double FaultRates::*rate;
    };
    for (const Fatal& f : {Fatal{"ECANCELED that no stop asked for: kIoError naming file and offset",
                                 &FaultRates::ecanceled},
                           Fatal{"EIO: kIoError naming file and offset", &FaultRates::eio},
                           Fatal{"zero-length read: kTruncated naming the file",
                                 &FaultRates::zero_read}}) {
      INFO(f.what);
      FaultRates r;
      r.*f.rate = 1;
      Single::Run run = s.Load(backend, depth, r);
      REQUIRE(!run.result);
      REQUIRE(run.faults.size() == 1);
      CHECK(ErrorMatches(run.result.error(), run.faults[0], s.ckpt()));
      if (f.rate == &FaultRates::zero_read) {
        CHECK(run.result.error().detail.find("truncated") != std::string::npos);
      }
    }
    {
      INFO("every read short: the rest is resubmitted until done, byte-exact");
      FaultRates r;
      r.short_read = 1;
      Single::Run run = s.Load(backend, depth, r);
      REQUIRE_MESSAGE(run.result, shardload::test::ErrorText(run.result));
      CHECK(run.result->short_reads == run.inputs.short_reads);
      CHECK(run.result->short_reads >= 10);  // each of the 10 reads was cut at least once
      CHECK(run.result->bytes_read == run.inputs.bytes);
    }
    {
      INFO("EINTR and EAGAIN at random: retried, byte-exact");
      FaultRates r;
      r.eagain = 0.3;
      r.eintr = 0.3;
      Single::Run run = s.Load(backend, depth, r);
      REQUIRE_MESSAGE(run.result, shardload::test::ErrorText(run.result));
      CHECK(run.result->retries == run.inputs.retries);
      CHECK(run.result->retries == run.faults.size());
    }
  }
}

TEST_CASE("policy rows under one fault, pread") { CheckPolicyRows(Backend::kPread); }
TEST_CASE("policy rows under one fault, io_uring" * doctest::skip(NoIoUring())) {
  CheckPolicyRows(Backend::kIoUring);
}

}  // namespace
}  // namespace shardload::test
