// StagedCopier (staged_copy.h).
// Thread-compatible: see the header.
#include "device/staged_copy.h"

#include <algorithm>
#include <utility>

namespace shardload {

StagedCopier::StagedCopier(std::shared_ptr<const CudaRuntime> runtime)
    : runtime_(std::move(runtime)), streams_(*runtime_) {}

StagedCopier::~StagedCopier() { Unregister(); }

Result<std::unique_ptr<StagedCopier>> StagedCopier::Start(
    std::shared_ptr<const CudaRuntime> runtime, unsigned streams) {
  if (CudaStatus s = runtime->Activate(); s != kCudaSuccess) {
    return CudaError(*runtime, ErrorCode::kUnsupported, "", "cudaSetDevice", s);
  }
  std::unique_ptr<StagedCopier> copier(new StagedCopier(std::move(runtime)));
  if (Status s = copier->streams_.Create(std::max(streams, 1u)); !s) return std::move(s).error();
  return copier;
}

Status StagedCopier::Register(std::byte* host, std::size_t size) {
  Unregister();
  CudaStatus s = runtime_->host_register(host, size, kCudaHostRegisterDefault);
  if (s != kCudaSuccess) {
    return CudaError(*runtime_, ErrorCode::kResourceExhausted, "",
                     "cudaHostRegister of " + std::to_string(size) + " bytes of shared staging",
                     s);
  }
  registered_ = host;
  registered_size_ = size;
  return {};
}

void StagedCopier::Unregister() {
  if (registered_ == nullptr) return;
  (void)streams_.Finish();  // never unpin under a copy
  (void)runtime_->host_unregister(registered_);
  (void)runtime_->get_last_error();
  registered_ = nullptr;
}

Status StagedCopier::Copy(std::byte* dst, std::uint64_t dst_stride, const std::byte* src,
                          std::uint64_t src_stride, std::uint64_t length, std::uint64_t rows,
                          std::string_view tensor) {
  if (rows == 0 || length == 0) return {};
  CudaStream stream = streams_.stream(copies_++);
  const CudaStatus s =
      rows == 1 ? runtime_->memcpy_async(dst, src, length, kCudaMemcpyHostToDevice, stream)
                : runtime_->memcpy_2d_async(dst, dst_stride, src, src_stride, length, rows,
                                            kCudaMemcpyHostToDevice, stream);
  if (s == kCudaSuccess) return {};
  return CudaError(*runtime_, ErrorCode::kIoError, std::string(tensor),
                   std::string(rows == 1 ? "cudaMemcpyAsync" : "cudaMemcpy2DAsync") + " of " +
                       std::to_string(rows) + " x " + std::to_string(length) +
                       " bytes from shared staging",
                   s);
}

Status StagedCopier::Zero(std::byte* dst, std::uint64_t n, std::string_view tensor) {
  if (n == 0) return {};
  const CudaStatus s = runtime_->memset_async(dst, 0, n, streams_.stream(copies_++));
  if (s == kCudaSuccess) return {};
  return CudaError(*runtime_, ErrorCode::kIoError, std::string(tensor),
                   "cudaMemsetAsync of " + std::to_string(n) + " bytes", s);
}

Status StagedCopier::Synchronize(const std::string& what) { return streams_.Finish(what); }

}  // namespace shardload
