// Watchdog, thread counting and backend choice for the fault tests.
#include "io/fault_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/capabilities.h"
#include "io/pread_backend.h"
#include "io/uring_backend.h"
#include "support/test_util.h"

namespace shardload::test {

Watchdog::Watchdog(std::chrono::seconds limit) : limit_(limit), thread_([this] { Run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::Arm(std::string what) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    what_ = std::move(what);
    armed_ = true;
    deadline_ = std::chrono::steady_clock::now() + limit_;
  }
  cv_.notify_all();
}

void Watchdog::Disarm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = false;
}

void Watchdog::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!quit_) {
    if (!armed_) {
      cv_.wait(lock);
      continue;
    }
    cv_.wait_until(lock, deadline_);
    if (armed_ && !quit_ && std::chrono::steady_clock::now() >= deadline_) {
      std::fprintf(stderr, "HANG: still running after %llds: %s\n",
                   static_cast<long long>(limit_.count()), what_.c_str());
      std::abort();
    }
  }
}

int UserThreadCount() {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("iou-", 0) != 0) ++n;
  }
  return n;
}

const IoBackend& RealBackend(Backend backend) {
  static const UringBackend uring;
  static const PreadBackend pread;
  return backend == Backend::kIoUring ? static_cast<const IoBackend&>(uring) : pread;
}

bool NoIoUring() {
  static const bool missing = [] {
    Capabilities caps = ProbeCapabilities();
    if (!caps.io_uring) {
      std::fprintf(stderr, "io_uring cases skipped: %s\n", caps.io_uring_reason.c_str());
    }
    return !caps.io_uring;
  }();
  return missing;
}

bool DirectIoWorks() {
  static const bool works = [] {
    TempDir dir;
    std::string path = dir / "probe";
    WriteFile(path, std::string(4096, 'x'));
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "O_DIRECT cases skipped: open: %s\n", std::strerror(errno));
      return false;
    }
    ::close(fd);
    return true;
  }();
  return works;
}

}  // namespace shardload::test
