// Element conversion between floating-point dtypes: BF16, F16 and F32 in
// every direction, F8_E4M3 and F8_E5M2 to each of them. Round to nearest,
// ties to even; NaN stays NaN (quieted, sign kept), infinities stay
// infinities, subnormals are kept (never flushed), overflow gives infinity.
// Vectorised: F16 <-> F32 with F16C when the CPU has it (checked at run
// time, bit-exact scalar fallback), the other loops are plain code the
// compiler vectorises (AVX2 / AVX-512 copies picked at first use).
// Thread-safe: pure functions over the caller's memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "shardload/dtype.h"

namespace shardload {

// True for the dtypes ConvertElements reads: BF16, F16, F32, F8_E4M3, F8_E5M2.
bool IsConvertibleSource(DType dtype);
// True for BF16, F16, F32.
bool IsConversionTarget(DType dtype);
// The dtype a tensor of `dtype` has after a load asking for `target`:
// `target` for a convertible source, else `dtype` unchanged.
DType ConvertedDType(DType dtype, DType target);

// Converts `count` elements at `src` (dtype `from`) into `dst` (dtype `to`).
// REQUIRES: from == to, or IsConvertibleSource(from) && IsConversionTarget(to);
// src and dst do not overlap. No alignment required. from == to copies
// count * element bytes (byte-sized dtypes only for sub-byte types: count
// is then a byte count).
void ConvertElements(DType from, DType to, const std::byte* src, std::byte* dst,
                     std::size_t count);

// Whether the F16C path is in use (for reports and tests).
bool ConvertUsesF16c();
// Test hook: forces the scalar F16 path on (true) or back to auto (false).
void ForceScalarF16ForTesting(bool scalar);

}  // namespace shardload
