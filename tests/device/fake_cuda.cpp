// FakeCuda and FakeCuFile (fake_cuda.h). Thread-compatible.
#include "device/fake_cuda.h"

#include <dlfcn.h>
#include <doctest/doctest.h>

#include <cstdlib>

namespace shardload::test {
namespace {

template <typename F>
F Symbol(void* library, const char* name) {
  void* p = ::dlsym(library, name);
  REQUIRE_MESSAGE(p != nullptr, name);
  return reinterpret_cast<F>(p);
}

constexpr int kH2D = 1, kD2H = 2;

}  // namespace

std::string FakeCuda::LibraryPath() { return FAKE_CUDART_PATH; }

FakeCuda::FakeCuda() {
  ::setenv("SHARDLOAD_CUDART", FAKE_CUDART_PATH, 1);
  for (const char* v : {"FAKE_CUDA_DEVICES", "FAKE_CUDA_FAIL_MALLOC", "FAKE_CUDA_FAIL_REGISTER",
                        "FAKE_CUDA_FAIL_COPY", "FAKE_CUDA_LATE_ERROR"}) {
    ::unsetenv(v);
  }
  library_ = ::dlopen(FAKE_CUDART_PATH, RTLD_NOW | RTLD_LOCAL);
  REQUIRE_MESSAGE(library_ != nullptr, ::dlerror());
}

FakeCuda::~FakeCuda() {
  ::dlclose(library_);
  ::unsetenv("SHARDLOAD_CUDART");
}

void* FakeCuda::Allocate(std::size_t size, std::uint8_t fill) {
  void* p = nullptr;
  REQUIRE(Symbol<int (*)(void**, std::size_t)>(library_, "cudaMalloc")(&p, size) == 0);
  Fill(p, size, fill);
  return p;
}

void FakeCuda::Free(void* device) {
  REQUIRE(Symbol<int (*)(void*)>(library_, "cudaFree")(device) == 0);
}

std::vector<std::uint8_t> FakeCuda::ToHost(const void* device, std::size_t size) const {
  std::vector<std::uint8_t> out(size);
  if (size == 0) return out;
  auto copy = Symbol<int (*)(void*, const void*, std::size_t, int)>(library_, "cudaMemcpy");
  REQUIRE(copy(out.data(), device, size, kD2H) == 0);
  return out;
}

void FakeCuda::Fill(void* device, std::size_t size, std::uint8_t value) const {
  if (size == 0) return;
  std::vector<std::uint8_t> bytes(size, value);
  auto copy = Symbol<int (*)(void*, const void*, std::size_t, int)>(library_, "cudaMemcpy");
  REQUIRE(copy(device, bytes.data(), size, kH2D) == 0);
}

long FakeCuda::Count(const char* name) const {
  return Symbol<long (*)(const char*)>(library_, "fake_cuda_count")(name);
}

long FakeCuda::Live() const {
  return Count("live_allocations") + Count("live_registrations") + Count("live_streams") +
         Count("live_events");
}

std::string FakeCuFile::LibraryPath() { return FAKE_CUFILE_PATH; }

FakeCuFile::FakeCuFile() {
  ::setenv("SHARDLOAD_CUFILE", FAKE_CUFILE_PATH, 1);
  for (const char* v : {"FAKE_CUFILE_FAIL_DRIVER", "FAKE_CUFILE_COMPAT", "FAKE_CUFILE_FORCE_COMPAT",
                        "FAKE_CUFILE_FAIL_HANDLE", "FAKE_CUFILE_FAIL_BUFREG",
                        "FAKE_CUFILE_READ_EIO", "FAKE_CUFILE_READ_ERROR", "FAKE_CUFILE_READ_SHORT",
                        "FAKE_CUFILE_READ_ZERO"}) {
    ::unsetenv(v);
  }
  library_ = ::dlopen(FAKE_CUFILE_PATH, RTLD_NOW | RTLD_LOCAL);
  REQUIRE_MESSAGE(library_ != nullptr, ::dlerror());
  Reset();
}

FakeCuFile::~FakeCuFile() {
  ::dlclose(library_);
  ::unsetenv("SHARDLOAD_CUFILE");
}

void FakeCuFile::Reset() const { Symbol<void (*)()>(library_, "fake_cufile_reset")(); }

long FakeCuFile::Count(const char* name) const {
  return Symbol<long (*)(const char*)>(library_, "fake_cufile_count")(name);
}

long FakeCuFile::Live() const {
  return Count("live_handles") + Count("live_buffers") + Count("driver_open");
}

}  // namespace shardload::test
