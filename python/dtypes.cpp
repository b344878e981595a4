// The dtype table of the Python views (see dtypes.h).
// Thread-safe: constant tables only.
#include "dtypes.h"

#include <array>
#include <cstddef>

namespace shardload::python {
namespace {

struct ViewRow {
  std::string_view numpy;  // numpy type string
  DlpackType dlpack;       // natural DLPack type
};

// In dtype.h's enum order.
constexpr std::array<ViewRow, kNumDTypes> kViews = {{
    {"|b1", {DlpackCode::kBool, 8}},     // BOOL
    {"|u1", {DlpackCode::kUInt, 8}},     // F4 (packed bytes)
    {"|u1", {DlpackCode::kUInt, 8}},     // F6_E2M3 (packed bytes)
    {"|u1", {DlpackCode::kUInt, 8}},     // F6_E3M2 (packed bytes)
    {"|u1", {DlpackCode::kUInt, 8}},     // U8
    {"|i1", {DlpackCode::kInt, 8}},      // I8
    {"|u1", {DlpackCode::kUInt, 8}},     // F8_E5M2
    {"|u1", {DlpackCode::kUInt, 8}},     // F8_E4M3
    {"|u1", {DlpackCode::kUInt, 8}},     // F8_E8M0
    {"|u1", {DlpackCode::kUInt, 8}},     // F8_E4M3FNUZ
    {"|u1", {DlpackCode::kUInt, 8}},     // F8_E5M2FNUZ
    {"<i2", {DlpackCode::kInt, 16}},     // I16
    {"<u2", {DlpackCode::kUInt, 16}},    // U16
    {"<f2", {DlpackCode::kFloat, 16}},   // F16
    {"<u2", {DlpackCode::kBfloat, 16}},  // BF16
    {"<i4", {DlpackCode::kInt, 32}},     // I32
    {"<u4", {DlpackCode::kUInt, 32}},    // U32
    {"<f4", {DlpackCode::kFloat, 32}},   // F32
    {"<c8", {DlpackCode::kComplex, 64}}, // C64
    {"<f8", {DlpackCode::kFloat, 64}},   // F64
    {"<i8", {DlpackCode::kInt, 64}},     // I64
    {"<u8", {DlpackCode::kUInt, 64}},    // U64
}};

const ViewRow& Row(DType dtype) { return kViews[static_cast<std::size_t>(dtype)]; }

}  // namespace

std::string_view NumpyTypeString(DType dtype) { return Row(dtype).numpy; }

std::uint64_t ViewItemSize(DType dtype) {
  unsigned bits = DTypeBits(dtype);
  return bits < 8 ? 1 : bits / 8;
}

std::vector<ssize_t> ViewShape(DType dtype, const std::vector<std::uint64_t>& shape,
                               std::uint64_t nbytes) {
  std::vector<ssize_t> out(shape.begin(), shape.end());
  const unsigned bits = DTypeBits(dtype);
  if (bits >= 8) return out;
  // A sub-byte tensor has at least one element (the format refuses an
  // element count that does not fill whole bytes, and 0 elements pass with
  // any shape), so the packed last dimension is well defined when whole.
  if (!shape.empty() && shape.back() * bits % 8 == 0) {
    out.back() = static_cast<ssize_t>(shape.back() * bits / 8);
    return out;
  }
  return {static_cast<ssize_t>(nbytes)};
}

std::vector<ssize_t> ContiguousStrides(const std::vector<ssize_t>& shape, ssize_t itemsize) {
  std::vector<ssize_t> strides(shape.size());
  ssize_t stride = itemsize;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

DlpackType NaturalDlpackType(DType dtype) { return Row(dtype).dlpack; }

DlpackType IntegerDlpackType(DType dtype) {
  const auto bits = static_cast<std::uint8_t>(ViewItemSize(dtype) * 8);
  return {bits == 8 ? DlpackCode::kUInt : DlpackCode::kInt, bits};
}

}  // namespace shardload::python
