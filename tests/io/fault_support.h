// Shared pieces of the fault tests: running a load through a chosen backend
// (ScopedBackendOverride), a watchdog that turns a hang into a failure that
// says what hung, thread counting, and the backends under test.
// Thread-compatible, except Watchdog (thread-safe).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "io/io_backend.h"
#include "io/load_harness.h"
#include "shardload/loader.h"

namespace shardload::test {

// Aborts the process, printing what was running, when a load outlives its
// deadline: a hang then fails with the case to replay, not a CTest timeout.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void Arm(std::string what);
  void Disarm();

  // Armed for its lifetime (also when a failed check throws out of it).
  class Scope {
   public:
    Scope(Watchdog& dog, std::string what) : dog_(dog) { dog_.Arm(std::move(what)); }
    ~Scope() { dog_.Disarm(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog& dog_;
  };

 private:
  void Run();

  const std::chrono::seconds limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string what_;
  bool armed_ = false;
  bool quit_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;
};

// Threads of this process, not counting io_uring's kernel workers
// (iou-wrk-*), which the kernel starts and retires on its own schedule.
int UserThreadCount();

// The real backend for `backend` (kPread or kIoUring).
const IoBackend& RealBackend(Backend backend);

// True when io_uring cannot be set up here (prints why, once).
bool NoIoUring();

// Whether O_DIRECT opens work in $TMPDIR (prints why not, once).
bool DirectIoWorks();

}  // namespace shardload::test
