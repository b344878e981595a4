// StagedCopier: copies out of host memory that someone else fills (a
// cooperative load's shared staging, coop/session.h) into device memory.
// Register pins that memory once (cudaHostRegister); Copy queues ROWS runs
// of LENGTH bytes at any strides as one cudaMemcpy2DAsync (one
// cudaMemcpyAsync for a single run), round robin over a few streams;
// Synchronize waits for all of them before the caller reuses the memory.
// Thread-compatible: one thread drives a copier (Start makes the device
// current on it); the destructor waits for the streams, then unregisters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "device/cuda_runtime.h"
#include "device/streams.h"
#include "shardload/error.h"

namespace shardload {

class StagedCopier {
 public:
  // Errors: kUnsupported (cudaSetDevice), kResourceExhausted (streams).
  static Result<std::unique_ptr<StagedCopier>> Start(std::shared_ptr<const CudaRuntime> runtime,
                                                     unsigned streams);
  ~StagedCopier();
  StagedCopier(const StagedCopier&) = delete;
  StagedCopier& operator=(const StagedCopier&) = delete;

  // Pins [HOST, HOST + SIZE) until Unregister or destruction (one range at
  // a time). Errors: kResourceExhausted in the runtime's words.
  Status Register(std::byte* host, std::size_t size);
  // Waits for the copies, then unpins. Idempotent.
  void Unregister();

  // Queues ROWS runs of LENGTH bytes from SRC (registered; runs SRC_STRIDE
  // apart) to DST (device memory; DST_STRIDE apart). TENSOR names an error
  // (kIoError).
  Status Copy(std::byte* dst, std::uint64_t dst_stride, const std::byte* src,
              std::uint64_t src_stride, std::uint64_t length, std::uint64_t rows,
              std::string_view tensor);
  // Queues zeroing of N device bytes at DST.
  Status Zero(std::byte* dst, std::uint64_t n, std::string_view tensor);
  // Waits for everything queued; WHAT names them in an error (kIoError).
  Status Synchronize(const std::string& what);

  std::uint64_t copies() const { return copies_; }
  std::uint64_t registered_bytes() const { return registered_size_; }
  unsigned streams() const { return streams_.size(); }

 private:
  explicit StagedCopier(std::shared_ptr<const CudaRuntime> runtime);

  std::shared_ptr<const CudaRuntime> runtime_;
  CopyStreams streams_;
  std::byte* registered_ = nullptr;
  std::size_t registered_size_ = 0;
  std::uint64_t copies_ = 0;
};

}  // namespace shardload
