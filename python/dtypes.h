// How each safetensors dtype appears in Python: the numpy dtype of its view
// (an unsigned integer of the same width where numpy has no equivalent:
// BF16 -> uint16, the F8 types -> uint8), the shape of that view (sub-byte
// types are packed bytes), and its DLPack type.
// Thread-safe: pure functions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "shardload/dtype.h"

namespace shardload::python {

// numpy's type string of DTYPE's view: "<f4", "|b1", "<u2" for BF16, ...
std::string_view NumpyTypeString(DType dtype);

// Bytes per element of the view: DTypeBits / 8, or 1 for F4 and F6.
std::uint64_t ViewItemSize(DType dtype);

// The shape of the view of a tensor of DTYPE, SHAPE and NBYTES bytes: SHAPE
// itself; for F4 and F6 the packed bytes, as SHAPE with the last dimension
// counted in bytes when its elements fill whole bytes (F4 [N, K] -> [N, K/2],
// torch's float4_e2m1fn_x2 convention), else one dimension of NBYTES.
std::vector<ssize_t> ViewShape(DType dtype, const std::vector<std::uint64_t>& shape,
                               std::uint64_t nbytes);

// C-contiguous byte strides of SHAPE with elements of ITEMSIZE bytes.
std::vector<ssize_t> ContiguousStrides(const std::vector<ssize_t>& shape, ssize_t itemsize);

// The DLPack data type codes (dlpack.h: DLDataTypeCode).
enum class DlpackCode : std::uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4,
                                       kComplex = 5, kBool = 6 };
struct DlpackType {
  DlpackCode code = DlpackCode::kUInt;
  std::uint8_t bits = 8;
};

// DTYPE's own DLPack type: kBfloat 16 for BF16, kBool 8 for BOOL, kComplex 64
// for C64, ...; the F8, F4 and F6 types (no DLPack code that consumers
// know) are kUInt 8 over the view's bytes.
DlpackType NaturalDlpackType(DType dtype);

// A plain integer of the view's width, which every DLPack consumer knows:
// kUInt 8 for one-byte views, kInt 16/32/64 for wider ones.
DlpackType IntegerDlpackType(DType dtype);

}  // namespace shardload::python
