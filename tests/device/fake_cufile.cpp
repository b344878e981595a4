// A fake libcufile (GPUDirect Storage) for tests without a GPU: the entry
// points engine/device/cufile.h resolves, loaded through the same dlopen path
// (SHARDLOAD_CUFILE=<this library>). cuFileRead reads the file with pread
// (through a buffered descriptor of the registered O_DIRECT one) into the
// fake CUDA runtime's device memory (fake_cudart.cpp, reached through
// fake_cuda_device_to_host), so a device range that is not allocated fails
// as on a GPU. A handle must be registered from an O_DIRECT descriptor while
// the driver is open; closing the driver with handles or buffers still
// registered, or deregistering one twice, counts as misuse; so does a read
// whose buffer base is inside a registered buffer but not its base.
//
// Injected failures, read from the environment at each call (N counts from
// the latest fake_cufile_reset()):
//   FAKE_CUFILE_FAIL_DRIVER=1   cuFileDriverOpen fails (nvidia-fs not loaded)
//   FAKE_CUFILE_COMPAT=1        the driver properties show no nvidia-fs and
//                               no storage type (compatibility mode only)
//   FAKE_CUFILE_FORCE_COMPAT=1  cuFileGetParameterBool(FORCE_COMPAT_MODE)
//   FAKE_CUFILE_FAIL_HANDLE=N   the Nth cuFileHandleRegister fails
//                               (CU_FILE_IO_NOT_SUPPORTED); "all": every one
//   FAKE_CUFILE_FAIL_BUFREG=1   cuFileBufRegister fails
//   FAKE_CUFILE_READ_EIO=N      the Nth cuFileRead returns -1, errno EIO
//   FAKE_CUFILE_READ_ERROR=N    the Nth returns -CU_FILE_NVFS_DRIVER_ERROR
//   FAKE_CUFILE_READ_SHORT=N    the Nth reads only half of what was asked
//   FAKE_CUFILE_READ_ZERO=N     the Nth returns 0 (end of file)
// Counters for the tests: fake_cufile_count("live_handles"), "live_buffers",
// "driver_open", "reads", "read_bytes", "unaligned", "registered_reads",
// "misuse", "driver_opens".
// Thread-safe: one mutex over the state, released during the pread.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <sys/types.h>

namespace {

struct Status {
  int err;
  int cu_err;
};

constexpr int kSuccess = 0;
constexpr int kDriverNotInitialized = 5001;
constexpr int kIoNotSupported = 5008;
constexpr int kNvfsDriverError = 5010;
constexpr int kPointerRangeError = 5014;
constexpr int kInvalidFileOpenFlag = 5019;
constexpr int kInvalidValue = 5022;
constexpr int kMemoryAlreadyRegistered = 5023;
constexpr int kMemoryNotRegistered = 5024;
constexpr int kHandleNotRegistered = 5027;
constexpr int kGpuMemoryPinningFailed = 5036;
constexpr std::uint64_t kPage = 4096;

struct Descr {
  int type;
  union {
    int fd;
    void* handle;
  } handle;
  const void* fs_ops;
};

struct Handle {
  int direct = -1;    // the caller's O_DIRECT descriptor
  int buffered = -1;  // ours, for pread at any offset
};

struct State {
  std::mutex mu;
  bool driver_open = false;
  void* cudart = nullptr;
  std::set<Handle*> handles;
  std::map<std::uintptr_t, std::size_t> buffers;  // base -> length
  long handle_calls = 0;
  long read_calls = 0;
  std::map<std::string, long> counts;
};

State& S() {
  static State s;
  return s;
}

long Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? std::strtol(v, nullptr, 10) : 0;
}

bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

Status Err(int err) { return Status{err, 0}; }

// The fake runtime's device-to-host translation (fake_cudart.cpp).
void* DeviceToHost(const void* p, std::size_t n) {
  using Fn = void* (*)(const void*, std::size_t);
  auto fn = reinterpret_cast<Fn>(::dlsym(S().cudart, "fake_cuda_device_to_host"));
  return fn != nullptr ? fn(p, n) : nullptr;
}

// The registered buffer holding P, or buffers.end().
std::map<std::uintptr_t, std::size_t>::iterator BufferOf(const void* p) {
  auto& b = S().buffers;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = b.upper_bound(a);
  if (it == b.begin()) return b.end();
  --it;
  return a < it->first + it->second ? it : b.end();
}

}  // namespace

extern "C" {

long fake_cufile_count(const char* name) {
  std::lock_guard lock(S().mu);
  const std::string key = name;
  if (key == "live_handles") return static_cast<long>(S().handles.size());
  if (key == "live_buffers") return static_cast<long>(S().buffers.size());
  if (key == "driver_open") return S().driver_open ? 1 : 0;
  auto it = S().counts.find(key);
  return it == S().counts.end() ? 0 : it->second;
}

void fake_cufile_reset() {
  std::lock_guard lock(S().mu);
  S().handle_calls = 0;
  S().read_calls = 0;
  S().counts.clear();
}

Status cuFileDriverOpen() {
  std::lock_guard lock(S().mu);
  if (Env("FAKE_CUFILE_FAIL_DRIVER") != 0) return Err(kDriverNotInitialized);
  if (S().driver_open) return Err(kSuccess);  // already open: success, as documented
  S().cudart = ::dlopen(FAKE_CUDART_PATH, RTLD_NOW | RTLD_LOCAL);
  if (S().cudart == nullptr) return Err(kDriverNotInitialized);
  S().driver_open = true;
  ++S().counts["driver_opens"];
  return Err(kSuccess);
}

Status cuFileDriverClose_v2() {
  std::lock_guard lock(S().mu);
  if (!S().driver_open || !S().handles.empty() || !S().buffers.empty()) ++S().counts["misuse"];
  if (S().driver_open) ::dlclose(S().cudart);
  S().cudart = nullptr;
  S().driver_open = false;
  return Err(kSuccess);
}

// CUfileDrvProps_t's first fields: nvfs major, minor, poll threshold, max
// direct I/O size, status flags, control flags.
Status cuFileDriverGetProperties(void* props) {
  std::lock_guard lock(S().mu);
  if (!S().driver_open) return Err(kDriverNotInitialized);
  struct {
    unsigned major, minor;
    std::size_t poll, max_io;
    unsigned status, control;
  } p{2, 17, 4, 16384, 1u << 4, 1u << 1};  // NVMe supported, compat allowed
  if (Env("FAKE_CUFILE_COMPAT") != 0) p.major = p.minor = p.status = 0;
  std::memcpy(props, &p, sizeof(p));
  return Err(kSuccess);
}

Status cuFileGetParameterBool(int param, bool* value) {
  *value = param == 2 && Env("FAKE_CUFILE_FORCE_COMPAT") != 0;
  return Err(kSuccess);
}

Status cuFileHandleRegister(void** fh, Descr* descr) {
  std::lock_guard lock(S().mu);
  *fh = nullptr;
  if (!S().driver_open) return Err(kDriverNotInitialized);
  const long nth = ++S().handle_calls;
  if (EnvIs("FAKE_CUFILE_FAIL_HANDLE", "all") || nth == Env("FAKE_CUFILE_FAIL_HANDLE")) {
    return Err(kIoNotSupported);
  }
  if (descr == nullptr || descr->type != 1) return Err(kInvalidValue);
  const int flags = ::fcntl(descr->handle.fd, F_GETFL);
  if (flags < 0 || (flags & O_DIRECT) == 0) {
    ++S().counts["misuse"];
    return Err(kInvalidFileOpenFlag);
  }
  const std::string self = "/proc/self/fd/" + std::to_string(descr->handle.fd);
  auto* h = new Handle{descr->handle.fd, ::open(self.c_str(), O_RDONLY | O_CLOEXEC)};
  if (h->buffered < 0) {
    delete h;
    return Err(kInvalidValue);
  }
  S().handles.insert(h);
  ++S().counts["handle_registrations"];
  *fh = h;
  return Err(kSuccess);
}

void cuFileHandleDeregister(void* fh) {
  std::lock_guard lock(S().mu);
  auto* h = static_cast<Handle*>(fh);
  if (S().handles.erase(h) == 0) {
    ++S().counts["misuse"];
    return;
  }
  ::close(h->buffered);
  delete h;
}

Status cuFileBufRegister(const void* base, std::size_t length, int /*flags*/) {
  std::lock_guard lock(S().mu);
  if (!S().driver_open) return Err(kDriverNotInitialized);
  if (Env("FAKE_CUFILE_FAIL_BUFREG") != 0) return Err(kGpuMemoryPinningFailed);
  if (DeviceToHost(base, length) == nullptr) return Err(kPointerRangeError);
  if (BufferOf(base) != S().buffers.end()) return Err(kMemoryAlreadyRegistered);
  S().buffers[reinterpret_cast<std::uintptr_t>(base)] = length;
  return Err(kSuccess);
}

Status cuFileBufDeregister(const void* base) {
  std::lock_guard lock(S().mu);
  if (S().buffers.erase(reinterpret_cast<std::uintptr_t>(base)) == 0) {
    ++S().counts["misuse"];
    return Err(kMemoryNotRegistered);
  }
  return Err(kSuccess);
}

ssize_t cuFileRead(void* fh, void* base, std::size_t size, off_t file_offset, off_t offset) {
  std::unique_lock lock(S().mu);
  if (!S().driver_open) return -kDriverNotInitialized;
  auto* h = static_cast<Handle*>(fh);
  if (S().handles.count(h) == 0) return -kHandleNotRegistered;
  const long nth = ++S().read_calls;
  ++S().counts["reads"];
  if (nth == Env("FAKE_CUFILE_READ_EIO")) {
    errno = EIO;
    return -1;
  }
  if (nth == Env("FAKE_CUFILE_READ_ERROR")) return -kNvfsDriverError;
  if (nth == Env("FAKE_CUFILE_READ_ZERO")) return 0;
  auto* device = static_cast<char*>(base) + offset;
  if (auto it = BufferOf(base); it != S().buffers.end()) {
    if (it->first != reinterpret_cast<std::uintptr_t>(base)) ++S().counts["misuse"];
    ++S().counts["registered_reads"];
  }
  if (reinterpret_cast<std::uintptr_t>(device) % kPage != 0 || file_offset % kPage != 0 ||
      size % kPage != 0) {
    ++S().counts["unaligned"];
  }
  void* host = DeviceToHost(device, size);
  if (host == nullptr) {
    ++S().counts["misuse"];
    return -kPointerRangeError;
  }
  std::size_t want = size;
  if (nth == Env("FAKE_CUFILE_READ_SHORT")) want = size > kPage ? size / 2 / kPage * kPage : size / 2;
  const int fd = h->buffered;
  lock.unlock();
  std::size_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd, static_cast<char*>(host) + got, want - got,
                              file_offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  lock.lock();
  S().counts["read_bytes"] += static_cast<long>(got);
  return static_cast<ssize_t>(got);
}

}  // extern "C"
