// CudaRuntime::Open: dlopen of libcudart and dlsym of each entry point.
// Thread-safe: dlopen/dlsym are; the result is immutable.
#include "device/cuda_runtime.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace shardload {
namespace {

Error Unsupported(std::string detail) {
  return MakeError(ErrorCode::kUnsupported, "", "", std::move(detail));
}

// The candidates, in order: $SHARDLOAD_CUDART alone when set.
std::vector<std::string> Candidates() {
  if (const char* forced = std::getenv("SHARDLOAD_CUDART"); forced != nullptr && *forced) {
    return {forced};
  }
  return {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"};
}

template <typename F>
bool Resolve(void* library, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(::dlsym(library, name));
  if (out == nullptr && missing.empty()) missing = name;
  return out != nullptr;
}

// Every entry point, or the name of the first one missing.
std::string ResolveAll(CudaRuntime& rt) {
  std::string missing;
  void* l = rt.library;
  Resolve(l, "cudaGetDeviceCount", rt.get_device_count, missing);
  Resolve(l, "cudaSetDevice", rt.set_device, missing);
  Resolve(l, "cudaMalloc", rt.malloc, missing);
  Resolve(l, "cudaFree", rt.free, missing);
  Resolve(l, "cudaHostRegister", rt.host_register, missing);
  Resolve(l, "cudaHostUnregister", rt.host_unregister, missing);
  Resolve(l, "cudaMemcpy", rt.memcpy, missing);
  Resolve(l, "cudaMemcpyAsync", rt.memcpy_async, missing);
  Resolve(l, "cudaMemcpy2DAsync", rt.memcpy_2d_async, missing);
  Resolve(l, "cudaMemsetAsync", rt.memset_async, missing);
  Resolve(l, "cudaStreamCreate", rt.stream_create, missing);
  Resolve(l, "cudaStreamDestroy", rt.stream_destroy, missing);
  Resolve(l, "cudaStreamSynchronize", rt.stream_synchronize, missing);
  Resolve(l, "cudaEventCreateWithFlags", rt.event_create_with_flags, missing);
  Resolve(l, "cudaEventRecord", rt.event_record, missing);
  Resolve(l, "cudaEventSynchronize", rt.event_synchronize, missing);
  Resolve(l, "cudaEventDestroy", rt.event_destroy, missing);
  Resolve(l, "cudaGetErrorString", rt.get_error_string, missing);
  Resolve(l, "cudaGetLastError", rt.get_last_error, missing);
  return missing;
}

}  // namespace

CudaRuntime::~CudaRuntime() {
  if (library != nullptr) ::dlclose(library);
}

Result<std::shared_ptr<const CudaRuntime>> CudaRuntime::Open(int device) {
  auto rt = std::make_shared<CudaRuntime>();
  std::string tried;
  for (const std::string& name : Candidates()) {
    rt->library = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (rt->library != nullptr) {
      rt->library_name = name;
      break;
    }
    const char* why = ::dlerror();
    tried += (tried.empty() ? "" : "; ") + (why != nullptr ? std::string(why) : name);
  }
  if (rt->library == nullptr) {
    return Unsupported("cuda:" + std::to_string(device) +
                       " needs the CUDA runtime library (libcudart), which did not load: " +
                       tried);
  }
  if (std::string missing = ResolveAll(*rt); !missing.empty()) {
    return Unsupported(rt->library_name + " lacks the entry point " + missing);
  }
  rt->device = device;
  int count = 0;
  CudaStatus s = rt->get_device_count(&count);
  if (s != kCudaSuccess || count <= 0) {
    rt->get_last_error();  // clear a sticky "no device" error
    return Unsupported("cuda:" + std::to_string(device) + ": no CUDA device (" +
                       (s != kCudaSuccess ? rt->Describe("cudaGetDeviceCount", s)
                                          : std::string("cudaGetDeviceCount returned 0")) +
                       ")");
  }
  if (device < 0 || device >= count) {
    return Unsupported("cuda:" + std::to_string(device) + " does not exist: " +
                       std::to_string(count) + " CUDA device(s)");
  }
  if (s = rt->Activate(); s != kCudaSuccess) {
    return Unsupported(rt->Describe("cudaSetDevice(" + std::to_string(device) + ")", s));
  }
  return std::shared_ptr<const CudaRuntime>(std::move(rt));
}

std::string CudaRuntime::Describe(const std::string& what, CudaStatus status) const {
  const char* words = get_error_string != nullptr ? get_error_string(status) : nullptr;
  return what + " on cuda:" + std::to_string(device) + ": " +
         (words != nullptr ? words : "unknown error") + " (cudaError " +
         std::to_string(status) + ")";
}

Error CudaError(const CudaRuntime& runtime, ErrorCode code, const std::string& tensor,
                const std::string& what, CudaStatus status) {
  return MakeError(code, "", tensor, runtime.Describe(what, status));
}

}  // namespace shardload
