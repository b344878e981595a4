// The DLPack C ABI (https://dmlc.github.io/dlpack/latest/c_api.html), the
// unversioned DLManagedTensor that the `dltensor` capsule protocol and
// torch.utils.dlpack.from_dlpack exchange. Only what an exporter of CPU and
// CUDA tensors needs; layouts follow dlpack.h v0.8 exactly (this is an ABI).
// Thread-safe: declarations only.
#pragma once

#include <cstdint>

namespace shardload::python {

extern "C" {

struct DLDevice {
  std::int32_t device_type;  // DLDeviceType: kDLCPU = 1, kDLCUDA = 2
  std::int32_t device_id;
};

struct DLDataType {
  std::uint8_t code;   // DLDataTypeCode (dtypes.h: DlpackCode)
  std::uint8_t bits;
  std::uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; may be null (compact row-major)
  std::uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

}  // extern "C"

inline constexpr std::int32_t kDLCPU = 1;
inline constexpr std::int32_t kDLCUDA = 2;

}  // namespace shardload::python
