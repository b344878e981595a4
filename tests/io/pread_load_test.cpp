// The load engine on the pread backend (and what does not depend on the
// backend: options, progress, fallback when io_uring is blocked), checked
// byte for byte against the pread oracle of load_harness.
#include <doctest/doctest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "io/load_harness.h"

namespace shardload::test {
namespace {

TEST_CASE("pread: buffered into library memory") { CheckLoadMatrix(Backend::kPread, false, false); }
TEST_CASE("pread: buffered into caller buffers") { CheckLoadMatrix(Backend::kPread, false, true); }
TEST_CASE("pread: O_DIRECT into library memory") { CheckLoadMatrix(Backend::kPread, true, false); }
TEST_CASE("pread: O_DIRECT into caller buffers") { CheckLoadMatrix(Backend::kPread, true, true); }
TEST_CASE("pread: error paths, buffered") { CheckErrorPaths(Backend::kPread, false); }
TEST_CASE("pread: error paths, O_DIRECT") { CheckErrorPaths(Backend::kPread, true); }
TEST_CASE("pread: reload, buffered") { CheckReload(Backend::kPread, false); }
TEST_CASE("pread: reload, O_DIRECT") { CheckReload(Backend::kPread, true); }

TEST_CASE("forced pread is reported as such") {
  LoadOptions o;
  o.backend = Backend::kPread;
  auto loader = Loader::Open(SharedFixture().checkpoint, o);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE(loaded);
  CHECK(loaded->stats().backend == Backend::kPread);
  CHECK(loaded->stats().backend_reason.find("forced") != std::string::npos);
}

TEST_CASE("options: invalid values are refused; odd ones still load exactly") {
  const Fixture& f = SharedFixture();
  LoadOptions zero_depth;
  zero_depth.queue_depth = 0;
  CHECK(Loader::Open(f.checkpoint, zero_depth).error().code == ErrorCode::kInvalidArgument);
  // Chunks below kMinChunkSize would cost the read plan many times the
  // checkpoint's size in memory: refused, saying the limit.
  for (std::uint64_t chunk : {std::uint64_t{0}, std::uint64_t{1}, kMinChunkSize - 1}) {
    CAPTURE(chunk);
    LoadOptions small_chunk;
    small_chunk.chunk_size = chunk;
    auto refused = Loader::Open(f.checkpoint, small_chunk);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == ErrorCode::kInvalidArgument);
    CHECK(refused.error().detail.find("at least 4 KiB") != std::string::npos);
  }

  LoadOptions odd;
  odd.chunk_size = kMinChunkSize;  // the smallest: many reads per tensor
  odd.huge_pages = false;
  odd.prefault = false;
  odd.threads = 3;
  Selection sel;
  sel.globs = {"model.layers.0.**"};
  for (bool direct : {false, true}) {
    odd.mode = direct ? IoMode::kDirect : IoMode::kBuffered;
    for (Backend backend : {Backend::kPread, Backend::kAuto}) {
      odd.backend = backend;
      auto loader = Loader::Open(f.checkpoint, odd);
      REQUIRE(loader);
      auto loaded = loader->Load(sel);
      REQUIRE_MESSAGE(loaded, shardload::test::ErrorText(loaded));
      for (const LoadedTensor& t : loaded->tensors()) {
        const std::string& want = f.oracle.at(t.name);
        CHECK(std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size()) == want);
      }
    }
  }
}

TEST_CASE("progress: called from workers with done <= total, ending at total") {
  const Fixture& f = SharedFixture();
  std::mutex mu;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
  LoadOptions o;
  o.threads = 2;
  o.chunk_size = 4096;
  o.progress = [&](std::uint64_t done, std::uint64_t total) {
    std::lock_guard<std::mutex> lock(mu);
    calls.emplace_back(done, total);
  };
  auto loader = Loader::Open(f.checkpoint, o);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE(loaded);
  const std::uint64_t total = loaded->stats().bytes;
  REQUIRE(!calls.empty());
  // Throttled: at most one call per 64 MiB step plus the last.
  CHECK(calls.size() <= total / (64 << 20) + 1);
  std::uint64_t most = 0;
  for (auto [done, t] : calls) {
    CHECK(t == total);
    CHECK(done <= total);
    most = std::max(most, done);
  }
  CHECK(most == total);
}

TEST_CASE("progress: a callback that throws is switched off; the load goes on") {
  const Fixture& f = SharedFixture();
  std::atomic<int> calls{0};
  for (Backend backend : {Backend::kPread, Backend::kAuto}) {
    calls = 0;
    LoadOptions o;
    o.backend = backend;
    o.progress = [&](std::uint64_t, std::uint64_t) {
      ++calls;
      throw std::runtime_error("from the callback");
    };
    auto loader = Loader::Open(f.checkpoint, o);
    REQUIRE(loader);
    auto loaded = loader->Load();
    REQUIRE(loaded);
    CHECK(calls == 1);
    CHECK(loaded->stats().bytes > 0);
  }
}

TEST_CASE("an empty selection result and empty tensors load to empty views") {
  std::mt19937_64 rng(Seed());
  TempDir dir;
  Checkpoint ckpt = WriteShards(dir.path(),
                                {{{"e.a", DType::kF32, {0}}, {"e.b", DType::kBF16, {4, 0}}}}, rng);
  auto loader = Loader::Open(ckpt);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE(loaded);
  REQUIRE(loaded->tensors().size() == 2);
  for (const LoadedTensor& t : loaded->tensors()) {
    CHECK(t.data.empty());
    CHECK(t.data.data() != nullptr);
  }
  CHECK(loaded->stats().bytes == 0);
  LoadedCheckpoint moved = std::move(*loaded);
  CHECK(moved.Find("e.b") != nullptr);
  CHECK(moved.Find("e.c") == nullptr);
}

// --- io_uring blocked by seccomp: the load falls back to pread and says so ---

constexpr const char* kChildEnv = "SHARDLOAD_SECCOMP_CHILD";

bool BlockIoUringSetup() {
#if defined(__x86_64__)
  constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
  return false;
#endif
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// Runs only in the child started below, under the filter.
TEST_CASE("seccomp_child") {
  if (std::getenv(kChildEnv) == nullptr) return;
  const Fixture& f = SharedFixture();
  auto loader = Loader::Open(f.checkpoint);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE(loaded);
  CHECK(loaded->stats().backend == Backend::kPread);
  CHECK(loaded->stats().backend_reason.find("EPERM") != std::string::npos);
  MESSAGE("fallback reason: " << loaded->stats().backend_reason);
  for (const LoadedTensor& t : loaded->tensors()) {
    CHECK(std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size()) ==
          f.oracle.at(t.name));
  }
  LoadOptions forced;
  forced.backend = Backend::kIoUring;
  auto refused = Loader::Open(f.checkpoint, forced);
  REQUIRE(!refused);
  CHECK(refused.error().code == ErrorCode::kUnsupported);
}

TEST_CASE("io_uring blocked by seccomp (EPERM): pread runs, and the reason is given") {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (!BlockIoUringSetup()) ::_exit(77);
    ::setenv(kChildEnv, "1", 1);
    ::execl("/proc/self/exe", "pread_load_test", "-tc=seccomp_child", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    MESSAGE("cannot install a seccomp filter here; not checked");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace shardload::test
