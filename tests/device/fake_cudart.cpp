// A fake CUDA runtime for tests without a GPU: the entry points the device
// stage resolves (engine/device/cuda_runtime.h), implemented on host memory,
// loaded through the same dlopen path (SHARDLOAD_CUDART=<this library>).
//
// "Device" pointers are host allocations moved by kDeviceTag into
// non-canonical addresses: the host dereferencing one crashes at once (and
// every copy checks its device range against the live allocations). Fresh
// device memory is filled with 0xA5, so bytes a load never wrote show.
// Streams are threads with a queue, so copies really run while the caller
// goes on; a host-to-device copy must come from registered (pinned) memory.
// Releasing staging or device memory under a pending copy counts as misuse.
//
// Injected failures, read from the environment at each call:
//   FAKE_CUDA_DEVICES=N      devices (default 1; 0: cudaGetDeviceCount fails)
//   FAKE_CUDA_FAIL_MALLOC=1  cudaMalloc fails (out of memory)
//   FAKE_CUDA_FAIL_REGISTER=1  cudaHostRegister fails
//   FAKE_CUDA_FAIL_COPY=N    the Nth cudaMemcpyAsync or cudaMemcpy2DAsync
//                            fails at once
//   FAKE_CUDA_LATE_ERROR=N   the Nth of them fails on its stream: a
//                            sticky error reported by every later synchronize
// Copies are counted from the latest cudaHostRegister (one per load's
// staging), which also clears the late error.
// Counters for the tests: fake_cuda_count("live_allocations"), ...; the
// fake libcufile reaches device memory through fake_cuda_device_to_host.
// Thread-safe: one mutex over the state; each stream's thread takes it too.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace {

constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;
constexpr int kMemoryAllocation = 2;
constexpr int kNoDevice = 100;
constexpr int kInvalidDevice = 101;
constexpr int kInvalidResourceHandle = 400;
constexpr int kIllegalAddress = 700;
constexpr int kHostMemoryAlreadyRegistered = 712;
constexpr int kHostMemoryNotRegistered = 713;
constexpr int kH2D = 1;
constexpr int kD2H = 2;
constexpr std::uintptr_t kDeviceTag = std::uintptr_t{1} << 62;
constexpr std::size_t kPage = 4096;

long Env(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v ? std::strtol(v, nullptr, 10) : fallback;
}

// ROWS rows of N bytes at strides DPITCH and SPITCH; SRC null: zeroes.
struct Task {
  void* dst = nullptr;  // host address (translated)
  const void* src = nullptr;
  std::size_t n = 0;
  bool fail = false;  // the injected late error
  std::size_t rows = 1;
  std::size_t dpitch = 0;
  std::size_t spitch = 0;
};

void Perform(const Task& t) {
  for (std::size_t r = 0; r < t.rows; ++r) {
    auto* dst = static_cast<char*>(t.dst) + r * t.dpitch;
    if (t.src == nullptr) {
      std::memset(dst, 0, t.n);
    } else {
      std::memcpy(dst, static_cast<const char*>(t.src) + r * t.spitch, t.n);
    }
  }
}

struct Stream;

struct State {
  std::mutex mu;
  std::map<std::uintptr_t, std::size_t> allocations;    // device base -> size
  std::map<std::uintptr_t, std::size_t> registrations;  // host base -> size
  std::set<Stream*> streams;
  std::condition_variable idle;  // a copy finished (WaitAll)
  std::set<void*> events;
  long copies_since_register = 0;
  int sticky = kSuccess;  // the late error, once a stream hit it
  int last_error = kSuccess;
  std::map<std::string, long> counts;
};

State& S() {
  static State s;  // destroyed at dlclose, when every stream has been destroyed
  return s;
}

int Fail(int code) {
  S().last_error = code;
  return code;
}

struct Stream {
  std::thread thread;
  std::condition_variable cv;
  std::deque<Task> queue;
  std::uint64_t enqueued = 0;
  std::uint64_t completed = 0;
  bool stop = false;

  // Runs on the stream's thread, with the state's mutex held between copies.
  void Run() {
    std::unique_lock lock(S().mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      Task t = queue.front();
      lock.unlock();
      if (!t.fail) Perform(t);
      lock.lock();
      if (t.fail) S().sticky = kIllegalAddress;
      queue.pop_front();
      ++completed;
      cv.notify_all();
      S().idle.notify_all();
    }
  }
};

struct Event {
  Stream* stream = nullptr;
  std::uint64_t target = 0;
};

// The host address behind device range [p, p + n), or null if not allocated.
void* DeviceToHost(const void* p, std::size_t n) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = S().allocations.upper_bound(a);
  if (it == S().allocations.begin()) return nullptr;
  --it;
  if (a + n > it->first + it->second) return nullptr;
  return reinterpret_cast<void*>(a - kDeviceTag);
}

bool Registered(const void* p, std::size_t n) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = S().registrations.upper_bound(a);
  if (it == S().registrations.begin()) return false;
  --it;
  return a + n <= it->first + it->second;
}

// Whether a queued or running copy reads host range [base, base + size).
bool PendingFrom(std::uintptr_t base, std::size_t size) {
  for (Stream* s : S().streams) {
    for (const Task& t : s->queue) {
      const auto src = reinterpret_cast<std::uintptr_t>(t.src);
      if (t.src != nullptr && src >= base && src < base + size) return true;
    }
  }
  return false;
}

// Waits until no stream has a copy queued (streams may be destroyed by
// other threads meanwhile: the wait is on the state's condition).
void WaitAll(std::unique_lock<std::mutex>& lock) {
  S().idle.wait(lock, [] {
    for (Stream* s : S().streams) {
      if (s->completed != s->enqueued) return false;
    }
    return true;
  });
}

// Queues T on STREAM: a host-to-device copy (or a zeroing, T.src null) of
// T.rows rows whose device range is [DST, DST + DEVICE_EXTENT) and source
// range [T.src, T.src + HOST_EXTENT).
int Enqueue(Task t, void* dst, std::size_t device_extent, std::size_t host_extent, int kind,
            void* stream) {
  auto* s = static_cast<Stream*>(stream);
  if (S().streams.count(s) == 0) return Fail(kInvalidResourceHandle);
  if (S().sticky != kSuccess) return S().sticky;
  t.dst = DeviceToHost(dst, device_extent);
  if (kind != kH2D || t.dst == nullptr || (t.src != nullptr && !Registered(t.src, host_extent))) {
    ++S().counts["misuse"];
    return Fail(kInvalidValue);
  }
  if (t.src != nullptr) {
    const long nth = ++S().copies_since_register;
    if (nth == Env("FAKE_CUDA_FAIL_COPY", 0)) return Fail(kInvalidValue);
    t.fail = nth == Env("FAKE_CUDA_LATE_ERROR", 0);
    ++S().counts["copies"];
    S().counts["copied_bytes"] += static_cast<long>(t.n * t.rows);
  }
  s->queue.push_back(t);
  ++s->enqueued;
  s->cv.notify_all();
  return kSuccess;
}

}  // namespace

extern "C" {

long fake_cuda_count(const char* name) {
  std::lock_guard lock(S().mu);
  const std::string key = name;
  if (key == "live_allocations") return static_cast<long>(S().allocations.size());
  if (key == "live_registrations") return static_cast<long>(S().registrations.size());
  if (key == "live_streams") return static_cast<long>(S().streams.size());
  if (key == "live_events") return static_cast<long>(S().events.size());
  auto it = S().counts.find(key);
  return it == S().counts.end() ? 0 : it->second;
}

// For the fake libcufile (fake_cufile.cpp): the host bytes behind device
// range [p, p + n), or null when it is not inside one live allocation.
void* fake_cuda_device_to_host(const void* p, std::size_t n) {
  std::lock_guard lock(S().mu);
  return DeviceToHost(p, n);
}

const char* cudaGetErrorString(int error) {
  switch (error) {
    case kSuccess: return "no error";
    case kInvalidValue: return "invalid argument";
    case kMemoryAllocation: return "out of memory";
    case kNoDevice: return "no CUDA-capable device is detected";
    case kInvalidDevice: return "invalid device ordinal";
    case kInvalidResourceHandle: return "invalid resource handle";
    case kIllegalAddress: return "an illegal memory access was encountered";
    case kHostMemoryAlreadyRegistered: return "part or all of the requested memory range is already mapped";
    case kHostMemoryNotRegistered: return "pointer does not correspond to a registered memory region";
    default: return "unrecognized error code";
  }
}

int cudaGetLastError() {
  std::lock_guard lock(S().mu);
  return std::exchange(S().last_error, kSuccess);
}

int cudaGetDeviceCount(int* count) {
  std::lock_guard lock(S().mu);
  const long n = Env("FAKE_CUDA_DEVICES", 1);
  *count = static_cast<int>(std::max(0L, n));
  return n > 0 ? kSuccess : Fail(kNoDevice);
}

int cudaSetDevice(int device) {
  std::lock_guard lock(S().mu);
  return device >= 0 && device < Env("FAKE_CUDA_DEVICES", 1) ? kSuccess : Fail(kInvalidDevice);
}

int cudaMalloc(void** ptr, std::size_t size) {
  std::lock_guard lock(S().mu);
  *ptr = nullptr;
  if (Env("FAKE_CUDA_FAIL_MALLOC", 0) != 0) return Fail(kMemoryAllocation);
  // 4 KiB aligned, as GPUDirect Storage reads need (real allocations are at
  // least 256-byte aligned, large ones in practice 2 MiB).
  void* host = std::aligned_alloc(kPage, (std::max<std::size_t>(size, 1) + kPage - 1) / kPage * kPage);
  if (host == nullptr) return Fail(kMemoryAllocation);
  std::memset(host, 0xA5, size);
  const auto device = reinterpret_cast<std::uintptr_t>(host) + kDeviceTag;
  S().allocations[device] = size;
  ++S().counts["allocations"];
  *ptr = reinterpret_cast<void*>(device);
  return kSuccess;
}

int cudaFree(void* ptr) {
  std::unique_lock lock(S().mu);
  if (ptr == nullptr) return kSuccess;
  auto it = S().allocations.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == S().allocations.end()) {
    ++S().counts["misuse"];
    return Fail(kInvalidValue);
  }
  WaitAll(lock);  // cudaFree synchronizes the device
  S().allocations.erase(it);
  std::free(reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(ptr) - kDeviceTag));
  return kSuccess;
}

int cudaHostRegister(void* ptr, std::size_t size, unsigned /*flags*/) {
  std::lock_guard lock(S().mu);
  if (Env("FAKE_CUDA_FAIL_REGISTER", 0) != 0) return Fail(kMemoryAllocation);
  if (ptr == nullptr || size == 0) return Fail(kInvalidValue);
  if (Registered(ptr, 1)) return Fail(kHostMemoryAlreadyRegistered);
  S().registrations[reinterpret_cast<std::uintptr_t>(ptr)] = size;
  ++S().counts["registrations"];
  S().copies_since_register = 0;
  S().sticky = kSuccess;
  return kSuccess;
}

int cudaHostUnregister(void* ptr) {
  std::lock_guard lock(S().mu);
  auto it = S().registrations.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == S().registrations.end()) return Fail(kHostMemoryNotRegistered);
  if (PendingFrom(it->first, it->second)) ++S().counts["misuse"];  // unpinned under a copy
  S().registrations.erase(it);
  return kSuccess;
}

int cudaStreamCreate(void** stream) {
  std::lock_guard lock(S().mu);
  auto* s = new Stream;
  s->thread = std::thread([s] { s->Run(); });
  S().streams.insert(s);
  *stream = s;
  return kSuccess;
}

int cudaStreamDestroy(void* stream) {
  auto* s = static_cast<Stream*>(stream);
  {
    std::lock_guard lock(S().mu);
    if (S().streams.erase(s) == 0) return Fail(kInvalidResourceHandle);
    s->stop = true;
    s->cv.notify_all();
  }
  s->thread.join();  // finishes its queue first
  delete s;
  return kSuccess;
}

int cudaStreamSynchronize(void* stream) {
  std::unique_lock lock(S().mu);
  auto* s = static_cast<Stream*>(stream);
  if (S().streams.count(s) == 0) return Fail(kInvalidResourceHandle);
  s->cv.wait(lock, [&] { return s->completed == s->enqueued; });
  return S().sticky;
}

int cudaMemcpyAsync(void* dst, const void* src, std::size_t n, int kind, void* stream) {
  std::lock_guard lock(S().mu);
  Task t;
  t.src = src;
  t.n = n;
  return Enqueue(t, dst, n, n, kind, stream);
}

int cudaMemcpy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                      std::size_t width, std::size_t height, int kind, void* stream) {
  std::lock_guard lock(S().mu);
  if (width > dpitch || width > spitch || src == nullptr) return Fail(kInvalidValue);
  ++S().counts["copies_2d"];
  if (height == 0 || width == 0) return kSuccess;
  Task t;
  t.src = src;
  t.n = width;
  t.rows = height;
  t.dpitch = dpitch;
  t.spitch = spitch;
  return Enqueue(t, dst, (height - 1) * dpitch + width, (height - 1) * spitch + width, kind,
                 stream);
}

int cudaMemsetAsync(void* dst, int value, std::size_t n, void* stream) {
  std::lock_guard lock(S().mu);
  if (value != 0) return Fail(kInvalidValue);  // the engine only zeroes
  Task t;
  t.n = n;
  return Enqueue(t, dst, n, 0, kH2D, stream);
}

int cudaMemcpy(void* dst, const void* src, std::size_t n, int kind) {
  std::unique_lock lock(S().mu);
  WaitAll(lock);  // the legacy default stream waits for the others
  void* host_src = kind == kD2H ? DeviceToHost(src, n) : nullptr;
  void* host_dst = kind == kH2D ? DeviceToHost(dst, n) : nullptr;
  if (kind == kD2H && host_src != nullptr) {
    std::memcpy(dst, host_src, n);
  } else if (kind == kH2D && host_dst != nullptr) {
    std::memcpy(host_dst, src, n);
  } else {
    return Fail(kInvalidValue);
  }
  return S().sticky;
}

int cudaEventCreateWithFlags(void** event, unsigned /*flags*/) {
  std::lock_guard lock(S().mu);
  auto* e = new Event;
  S().events.insert(e);
  *event = e;
  return kSuccess;
}

int cudaEventDestroy(void* event) {
  std::lock_guard lock(S().mu);
  if (S().events.erase(event) == 0) return Fail(kInvalidResourceHandle);
  delete static_cast<Event*>(event);
  return kSuccess;
}

int cudaEventRecord(void* event, void* stream) {
  std::lock_guard lock(S().mu);
  auto* s = static_cast<Stream*>(stream);
  if (S().events.count(event) == 0 || S().streams.count(s) == 0) {
    return Fail(kInvalidResourceHandle);
  }
  auto* e = static_cast<Event*>(event);
  e->stream = s;
  e->target = s->enqueued;
  return kSuccess;
}

int cudaEventSynchronize(void* event) {
  std::unique_lock lock(S().mu);
  if (S().events.count(event) == 0) return Fail(kInvalidResourceHandle);
  auto* e = static_cast<Event*>(event);
  if (e->stream == nullptr) return kSuccess;  // never recorded
  Stream* s = e->stream;
  s->cv.wait(lock, [&] { return S().streams.count(s) == 0 || s->completed >= e->target; });
  return S().sticky;
}

}  // extern "C"
