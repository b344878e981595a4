// The 22 safetensors element types, in the reference's enum order (the
// writer sorts by it), with their names and bit widths.
// Thread-safe: constant tables only.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace shardload {

enum class DType : std::uint8_t {
  kBool, kF4, kF6E2M3, kF6E3M2, kU8, kI8, kF8E5M2, kF8E4M3, kF8E8M0,
  kF8E4M3Fnuz, kF8E5M2Fnuz, kI16, kU16, kF16, kBF16, kI32, kU32, kF32,
  kC64, kF64, kI64, kU64,
};
inline constexpr int kNumDTypes = 22;

// The JSON spelling, e.g. "BF16", "F8_E4M3", "F6_E2M3".
std::string_view DTypeName(DType dtype);
// Exact, case-sensitive inverse of DTypeName.
std::optional<DType> ParseDType(std::string_view name);
// Bits per element: 4 for F4, 6 for the F6 types, else 8..64.
unsigned DTypeBits(DType dtype);

}  // namespace shardload
