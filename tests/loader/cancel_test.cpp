// CancelToken (LoadOptions::cancel) end to end: a token cancelled before a
// load fails it at once; a Cancel() from another thread while a load of a
// generated 96 MiB checkpoint is reading stops its workers early (the last
// tensor's destination is never written), with both backends, one worker
// and several; the failed load's memory is unmapped; a fresh token loads the
// same checkpoint byte-exact against a plain pread. Runs under TSan in CI.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shardload/cancel.h"
#include "shardload/loader.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

constexpr std::uint64_t kTensorBytes = 8ULL << 20;
constexpr int kTensors = 12;  // 96 MiB in all

std::string TensorName(int i) {
  char name[32];
  std::snprintf(name, sizeof name, "layers.%02d.weight", i);
  return name;
}

// Byte k of tensor i: a pattern that differs per tensor and per offset.
std::byte PatternByte(int i, std::uint64_t k) {
  return static_cast<std::byte>((k * 131 + static_cast<std::uint64_t>(i) * 17 + (k >> 12)) & 0xff);
}

// A 96 MiB checkpoint in three shards, written once per test run.
const std::string& GeneratedCheckpoint() {
  static test::TempDir dir;
  static const std::string path = [] {
    std::vector<TensorData> tensors;
    for (int i = 0; i < kTensors; ++i) {
      TensorData t;
      t.name = TensorName(i);
      t.dtype = DType::kU8;
      t.shape = {kTensorBytes};
      t.fill = [i](std::uint64_t offset, std::span<std::byte> out) {
        for (std::size_t k = 0; k < out.size(); ++k) out[k] = PatternByte(i, offset + k);
      };
      tensors.push_back(std::move(t));
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 4 * kTensorBytes;
    Status s = WriteCheckpoint(dir.path(), tensors, options);
    REQUIRE_MESSAGE(s.ok(), test::ErrorText(s));
    return dir.path();
  }();
  return path;
}

// Virtual memory of this process, in bytes (/proc/self/statm).
std::uint64_t VirtualBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  REQUIRE(f != nullptr);
  unsigned long long pages = 0;
  REQUIRE(std::fscanf(f, "%llu", &pages) == 1);
  std::fclose(f);
  return pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

void RequireCancelled(const Error& e) {
  CHECK_MESSAGE(e.code == ErrorCode::kCancelled, e.ToString());
  CHECK(e.detail == "cancelled by the caller");
}

// Options whose progress callback, at its first call, waits (at most 10 s)
// until TOKEN is cancelled by another thread: the load is then certainly
// mid-way. `first_call` is set when that happens.
LoadOptions BlockingOptions(Backend backend, unsigned threads,
                            std::shared_ptr<CancelToken> token,
                            std::shared_ptr<std::atomic<bool>> first_call) {
  LoadOptions options;
  options.backend = backend;
  options.threads = threads;
  options.queue_depth = 2;
  options.chunk_size = 1ULL << 20;
  options.cancel = token;
  options.progress = [token, first_call](std::uint64_t done, std::uint64_t) {
    if (done == 0 || first_call->exchange(true)) return;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!token->cancelled() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  return options;
}

// Cancels TOKEN once FIRST_CALL is set (from another thread, as a UI would).
std::thread Canceller(std::shared_ptr<CancelToken> token,
                      std::shared_ptr<std::atomic<bool>> first_call) {
  return std::thread([token, first_call] {
    while (!first_call->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    token->Cancel();
  });
}

TEST_CASE("a token cancelled before the load fails it with kCancelled") {
  auto token = std::make_shared<CancelToken>();
  token->Cancel();
  CHECK(token->cancelled());
  LoadOptions options;
  options.cancel = token;
  auto loader = Loader::Open(GeneratedCheckpoint(), options);
  REQUIRE_FALSE(loader);  // checked right after resolving the checkpoint
  RequireCancelled(loader.error());

  auto ok = Loader::Open(GeneratedCheckpoint());
  REQUIRE(ok);
  auto token2 = std::make_shared<CancelToken>();
  LoadOptions options2;
  options2.cancel = token2;
  auto loader2 = Loader::Open(ok->checkpoint(), options2);
  REQUIRE(loader2);
  token2->Cancel();
  auto loaded = loader2->Load();
  REQUIRE_FALSE(loaded);
  RequireCancelled(loaded.error());
  std::vector<std::byte> buffer(kTensorBytes);
  std::vector<Destination> dst{{TensorName(0), buffer.data(), buffer.size()}};
  auto into = loader2->LoadInto(dst);
  REQUIRE_FALSE(into);
  RequireCancelled(into.error());
}

TEST_CASE("Cancel() from another thread stops a running LoadInto early") {
  for (Backend backend : {Backend::kPread, Backend::kIoUring}) {
    for (unsigned threads : {1u, 3u}) {
      CAPTURE(static_cast<int>(backend));
      CAPTURE(threads);
      auto token = std::make_shared<CancelToken>();
      auto first_call = std::make_shared<std::atomic<bool>>(false);
      auto loader = Loader::Open(GeneratedCheckpoint(),
                                 BlockingOptions(backend, threads, token, first_call));
      if (!loader && loader.error().code == ErrorCode::kUnsupported) continue;  // no io_uring
      REQUIRE_MESSAGE(loader, test::ErrorText(loader));
      std::vector<std::byte> memory(kTensors * kTensorBytes, std::byte{0xEE});
      std::vector<Destination> dst;
      for (int i = 0; i < kTensors; ++i) {
        dst.push_back({TensorName(i), memory.data() + i * kTensorBytes, kTensorBytes});
      }
      std::thread canceller = Canceller(token, first_call);
      auto stats = loader->LoadInto(dst);
      canceller.join();
      REQUIRE_FALSE(stats);
      RequireCancelled(stats.error());
      if (threads == 1) {
        // One worker, reading in file order, 2 MiB at most in flight: it
        // stopped within a few MiB of the first 64 MiB progress report, so
        // the last tensor was never written.
        const std::byte* last = memory.data() + (kTensors - 1) * kTensorBytes;
        bool untouched = true;
        for (std::uint64_t k = 0; k < kTensorBytes; k += 4096) untouched &= last[k] == std::byte{0xEE};
        CHECK(untouched);
      }
    }
  }
}

TEST_CASE("a cancelled Load frees its memory; a fresh token loads byte-exact") {
  auto token = std::make_shared<CancelToken>();
  auto first_call = std::make_shared<std::atomic<bool>>(false);
  auto loader = Loader::Open(GeneratedCheckpoint(),
                             BlockingOptions(Backend::kAuto, 2, token, first_call));
  REQUIRE(loader);
  const std::uint64_t before = VirtualBytes();
  std::thread canceller = Canceller(token, first_call);
  auto loaded = loader->Load();
  canceller.join();
  REQUIRE_FALSE(loaded);
  RequireCancelled(loaded.error());
  // The 96 MiB arena is unmapped again (slack for thread stacks, allocator).
  CHECK(VirtualBytes() < before + (32ULL << 20));

  LoadOptions fresh;
  fresh.cancel = std::make_shared<CancelToken>();
  auto again = Loader::Open(loader->checkpoint(), fresh);
  REQUIRE(again);
  auto full = again->Load();
  REQUIRE_MESSAGE(full, test::ErrorText(full));
  REQUIRE(full->tensors().size() == kTensors);
  for (const LoadedTensor& t : full->tensors()) {
    const TensorInfo* info = again->checkpoint().Find(t.name);
    REQUIRE(info != nullptr);
    std::vector<std::byte> expected(info->size);
    int fd = ::open(again->checkpoint().shards()[info->shard].path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::pread(fd, expected.data(), expected.size(), static_cast<off_t>(info->offset)) ==
            static_cast<ssize_t>(expected.size()));
    ::close(fd);
    CHECK_MESSAGE(std::memcmp(expected.data(), t.data.data(), expected.size()) == 0, t.name);
  }
}

TEST_CASE("a Cancel() racing with the load either stops it or comes too late") {
  for (int delay_us : {0, 200, 2000, 20000}) {
    auto token = std::make_shared<CancelToken>();
    LoadOptions options;
    options.threads = 4;
    options.cancel = token;
    auto loader = Loader::Open(GeneratedCheckpoint(), options);
    REQUIRE(loader);
    std::thread canceller([token, delay_us] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      token->Cancel();
    });
    auto loaded = loader->Load();
    canceller.join();
    if (!loaded) RequireCancelled(loaded.error());
  }
}

}  // namespace
}  // namespace shardload
