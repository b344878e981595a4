// The tests' handle on the fake CUDA runtime (fake_cudart.cpp): points
// SHARDLOAD_CUDART at it, and reaches its device memory and counters through
// the same library the engine dlopens (dlopen returns the same handle).
// FakeCuFile does the same for the fake libcufile (fake_cufile.cpp).
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

// The tests' handle on the fake libcufile (fake_cufile.cpp): points
// SHARDLOAD_CUFILE at it, clears the FAKE_CUFILE_* variables and its counters.
class FakeCuFile {
 public:
  FakeCuFile();
  ~FakeCuFile();
  FakeCuFile(const FakeCuFile&) = delete;
  FakeCuFile& operator=(const FakeCuFile&) = delete;

  static std::string LibraryPath();
  void Reset() const;  // counters and the Nth-call counts of the injections
  long Count(const char* name) const;
  // live handles + registered buffers + an open driver: 0 when nothing leaked.
  long Live() const;

 private:
  void* library_ = nullptr;
};

}  // namespace shardload::test
