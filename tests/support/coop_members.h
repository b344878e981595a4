// Members of one cooperative load as threads of a test process: each gets
// its own ConnectLocal communicator of a fresh job id and a copy of the
// test's LoadOptions with it (tests/coop/api_test.cpp,
// tests/device/coop_device_test.cpp).
// Thread-safe: RunMembers runs BODY on SIZE threads at once and joins them.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "shardload/cooperate.h"
#include "shardload/loader.h"

// Several members in one process (several Loaders at once) race inside
// oneTBB's uninstrumented internals under TSan: such cases skip there (one
// Loader per process, as the CLI cases run, is clean).
#define SKIP_MEMBERS_UNDER_TSAN()                                                   \
  if (::shardload::test::kUnderTsan) {                                              \
    MESSAGE("skipped under TSan: concurrent Loaders in one process race in oneTBB"); \
    return;                                                                         \
  }

namespace shardload::test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif

inline std::string UniqueJob(const std::string& prefix) {
  static std::atomic<int> n{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// Runs BODY(member, options) on SIZE threads, member m with BASE plus a
// communicator of one job (staging 64 KiB, peer timeout 20 s unless BASE
// says otherwise); returns their error texts ("" on success).
inline std::vector<std::string> RunMembers(
    unsigned size, const LoadOptions& base,
    const std::function<std::string(unsigned, LoadOptions)>& body) {
  const std::string job = UniqueJob("coop-members");
  std::vector<std::string> out(size);
  std::vector<std::thread> threads;
  for (unsigned m = 0; m < size; ++m) {
    threads.emplace_back([&, m] {
      auto group = ConnectLocal(job, m, size, std::chrono::seconds(20));
      if (!group) {
        out[m] = group.error().ToString();
        return;
      }
      LoadOptions options = base;
      options.cooperate.group = std::move(*group);
      out[m] = body(m, std::move(options));
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

// LoadOptions for members: 2 threads, MODE, a 64 KiB staging (many waves),
// a 20 s peer timeout.
inline LoadOptions MemberOptions(IoMode mode) {
  LoadOptions options;
  options.threads = 2;
  options.mode = mode;
  options.cooperate.staging_bytes = 64 << 10;
  options.cooperate.peer_timeout = std::chrono::seconds(20);
  return options;
}

}  // namespace shardload::test
