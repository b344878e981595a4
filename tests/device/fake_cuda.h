// The tests' handle on the fake CUDA runtime (fake_cudart.cpp): points
// SHARDLOAD_CUDART at it, and reaches its device memory and counters through
// the same library the engine dlopens (dlopen returns the same handle).
// Thread-compatible; use from the test's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shardload::test {

class FakeCuda {
 public:
  FakeCuda();  // sets SHARDLOAD_CUDART, clears the FAKE_CUDA_* variables
  ~FakeCuda();
  FakeCuda(const FakeCuda&) = delete;
  FakeCuda& operator=(const FakeCuda&) = delete;

  static std::string LibraryPath();
  // A device buffer (cudaMalloc), filled with FILL; freed by Free.
  void* Allocate(std::size_t size, std::uint8_t fill);
  void Free(void* device);
  std::vector<std::uint8_t> ToHost(const void* device, std::size_t size) const;
  void Fill(void* device, std::size_t size, std::uint8_t value) const;
  long Count(const char* name) const;
  // live allocations + registrations + streams + events: 0 when nothing leaked.
  long Live() const;

 private:
  void* library_ = nullptr;
};

}  // namespace shardload::test
