// Memory the device stage owns, each freed by its destructor:
//   DeviceBuffer  one cudaMalloc (a load's library-owned device memory);
//   PinnedBuffer  page-aligned host memory registered with cudaHostRegister
//                 (the staging ring).
// Move-only; thread-compatible. Both keep the runtime alive while they live.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "buffers/mapped_memory.h"
#include "device/cuda_runtime.h"
#include "shardload/error.h"

namespace shardload {

class DeviceBuffer {
 public:
  // SIZE == 0 allocates nothing (data() is null). Errors: kResourceExhausted
  // naming the size and the device.
  static Result<DeviceBuffer> Allocate(std::shared_ptr<const CudaRuntime> runtime,
                                       std::uint64_t size);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();

  std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }

 private:
  void Reset() noexcept;
  std::shared_ptr<const CudaRuntime> runtime_;
  std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

class PinnedBuffer {
 public:
  // Maps SIZE bytes and registers them. Errors: kResourceExhausted.
  static Result<PinnedBuffer> Allocate(std::shared_ptr<const CudaRuntime> runtime,
                                       std::uint64_t size);
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  ~PinnedBuffer();

  std::byte* data() const { return memory_.data(); }
  std::uint64_t size() const { return memory_.size(); }

 private:
  void Reset() noexcept;
  std::shared_ptr<const CudaRuntime> runtime_;
  MappedMemory memory_;
  bool registered_ = false;
};

}  // namespace shardload
