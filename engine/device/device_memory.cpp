// DeviceBuffer and PinnedBuffer (device_memory.h). Thread-compatible.
#include "device/device_memory.h"

#include <string>
#include <utility>

namespace shardload {

Result<DeviceBuffer> DeviceBuffer::Allocate(std::shared_ptr<const CudaRuntime> runtime,
                                            std::uint64_t size) {
  DeviceBuffer out;
  if (size == 0) return out;
  if (CudaStatus s = runtime->Activate(); s != kCudaSuccess) {
    return CudaError(*runtime, ErrorCode::kUnsupported, "", "cudaSetDevice", s);
  }
  void* data = nullptr;
  if (CudaStatus s = runtime->malloc(&data, size); s != kCudaSuccess || data == nullptr) {
    runtime->get_last_error();
    return CudaError(*runtime, ErrorCode::kResourceExhausted, "",
                     "cudaMalloc of " + std::to_string(size) + " bytes", s);
  }
  out.runtime_ = std::move(runtime);
  out.data_ = static_cast<std::byte*>(data);
  out.size_ = size;
  return out;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : runtime_(std::move(other.runtime_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    runtime_ = std::move(other.runtime_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() { Reset(); }

void DeviceBuffer::Reset() noexcept {
  if (data_ != nullptr) (void)runtime_->free(data_);
  data_ = nullptr;
  size_ = 0;
  runtime_.reset();
}

Result<PinnedBuffer> PinnedBuffer::Allocate(std::shared_ptr<const CudaRuntime> runtime,
                                            std::uint64_t size) {
  PinnedBuffer out;
  auto memory = MappedMemory::Map(size, /*huge_pages=*/false);
  if (!memory) return std::move(memory).error();
  out.memory_ = std::move(*memory);
  out.runtime_ = std::move(runtime);
  if (out.size() == 0) return out;
  CudaStatus s = out.runtime_->host_register(out.data(), out.size(), kCudaHostRegisterDefault);
  if (s != kCudaSuccess) {
    out.runtime_->get_last_error();
    return CudaError(*out.runtime_, ErrorCode::kResourceExhausted, "",
                     "cudaHostRegister of " + std::to_string(out.size()) +
                         " bytes of staging",
                     s);
  }
  out.registered_ = true;
  return out;
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : runtime_(std::move(other.runtime_)),
      memory_(std::move(other.memory_)),
      registered_(std::exchange(other.registered_, false)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    runtime_ = std::move(other.runtime_);
    memory_ = std::move(other.memory_);
    registered_ = std::exchange(other.registered_, false);
  }
  return *this;
}

PinnedBuffer::~PinnedBuffer() { Reset(); }

void PinnedBuffer::Reset() noexcept {
  if (registered_) (void)runtime_->host_unregister(memory_.data());
  registered_ = false;
  memory_ = MappedMemory();
  runtime_.reset();
}

}  // namespace shardload
