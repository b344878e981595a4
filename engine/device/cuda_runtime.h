// The CUDA runtime API entry points the device stage uses, resolved at run
// time with dlopen/dlsym: no build or link dependency on CUDA. The library is
// $SHARDLOAD_CUDART when set (the tests point it at tests/device's fake),
// else the first of libcudart.so.13, .so.12, .so.11.0, .so that loads.
// Thread-safe: a CudaRuntime is immutable after Open; the CUDA runtime's own
// entry points are thread-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "shardload/error.h"

namespace shardload {

// The C ABI of the runtime API, reduced to what is used here: cudaError_t and
// cudaMemcpyKind are C enums (int), streams and events opaque pointers.
using CudaStatus = int;
using CudaStream = void*;
using CudaEvent = void*;
inline constexpr CudaStatus kCudaSuccess = 0;
inline constexpr int kCudaMemcpyHostToDevice = 1;
inline constexpr int kCudaMemcpyDeviceToHost = 2;
inline constexpr unsigned kCudaHostRegisterDefault = 0;
inline constexpr unsigned kCudaEventDisableTiming = 2;

struct CudaRuntime {
  // Loads the library and checks that DEVICE (an ordinal) exists, then makes
  // it current on the calling thread. Errors: kUnsupported naming what is
  // missing (library, entry point, any device, this device).
  static Result<std::shared_ptr<const CudaRuntime>> Open(int device);

  CudaRuntime() = default;
  CudaRuntime(const CudaRuntime&) = delete;
  CudaRuntime& operator=(const CudaRuntime&) = delete;
  ~CudaRuntime();

  // "cudaMalloc of 4096 bytes on cuda:0: out of memory (cudaError 2)", with
  // the runtime's own words for STATUS.
  std::string Describe(const std::string& what, CudaStatus status) const;
  // Makes this runtime's device current on the calling thread (the CUDA
  // current device is per thread).
  CudaStatus Activate() const { return set_device(device); }

  void* library = nullptr;  // dlopen handle
  std::string library_name;
  int device = 0;

  CudaStatus (*get_device_count)(int*) = nullptr;
  CudaStatus (*set_device)(int) = nullptr;
  CudaStatus (*malloc)(void**, std::size_t) = nullptr;
  CudaStatus (*free)(void*) = nullptr;
  CudaStatus (*host_register)(void*, std::size_t, unsigned) = nullptr;
  CudaStatus (*host_unregister)(void*) = nullptr;
  CudaStatus (*memcpy)(void*, const void*, std::size_t, int) = nullptr;
  CudaStatus (*memcpy_async)(void*, const void*, std::size_t, int, CudaStream) = nullptr;
  // cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, stream)
  CudaStatus (*memcpy_2d_async)(void*, std::size_t, const void*, std::size_t, std::size_t,
                                std::size_t, int, CudaStream) = nullptr;
  CudaStatus (*memset_async)(void*, int, std::size_t, CudaStream) = nullptr;
  CudaStatus (*stream_create)(CudaStream*) = nullptr;
  CudaStatus (*stream_destroy)(CudaStream) = nullptr;
  CudaStatus (*stream_synchronize)(CudaStream) = nullptr;
  CudaStatus (*event_create_with_flags)(CudaEvent*, unsigned) = nullptr;
  CudaStatus (*event_record)(CudaEvent, CudaStream) = nullptr;
  CudaStatus (*event_synchronize)(CudaEvent) = nullptr;
  CudaStatus (*event_destroy)(CudaEvent) = nullptr;
  const char* (*get_error_string)(CudaStatus) = nullptr;
  CudaStatus (*get_last_error)() = nullptr;
};

// An Error of CODE for a failed runtime call WHAT about TENSOR (may be
// empty), in the runtime's words (CudaRuntime::Describe).
Error CudaError(const CudaRuntime& runtime, ErrorCode code, const std::string& tensor,
                const std::string& what, CudaStatus status);

}  // namespace shardload
