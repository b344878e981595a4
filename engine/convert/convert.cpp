// Conversion kernels. Every pair goes through F32 in blocks that stay in L1:
// source -> F32 (exact for every source) -> target (one rounding), so each
// result is rounded once, as numpy's astype rounds.
// Thread-safe: stateless but for the test hook (an atomic) and constant tables.
#include "convert/convert.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>

namespace shardload {
namespace {

constexpr std::size_t kBlock = 512;  // elements per F32 block (2 KiB)

std::uint32_t F32Bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float F32FromBits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// --- F8 decoding (exact into F32) -------------------------------------------

// F8_E4M3 (OCP "fn"): bias 7, no infinities, S.1111.111 is NaN.
float DecodeE4M3(std::uint8_t b) {
  float sign = (b & 0x80) ? -1.0f : 1.0f;
  int exp = (b >> 3) & 0xf, mant = b & 7;
  if (exp == 15 && mant == 7) return std::copysign(std::nanf(""), sign);
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(static_cast<float>(8 + mant), exp - 10);
}

// F8_E5M2: bias 15, IEEE-like (exponent 31: infinity or NaN).
float DecodeE5M2(std::uint8_t b) {
  float sign = (b & 0x80) ? -1.0f : 1.0f;
  int exp = (b >> 2) & 0x1f, mant = b & 3;
  if (exp == 31) return mant ? std::copysign(std::nanf(""), sign) : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -16);
  return sign * std::ldexp(static_cast<float>(4 + mant), exp - 17);
}

template <float (*Decode)(std::uint8_t)>
std::array<float, 256> MakeTable() {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = Decode(static_cast<std::uint8_t>(i));
  return t;
}
const std::array<float, 256> kE4M3 = MakeTable<DecodeE4M3>();
const std::array<float, 256> kE5M2 = MakeTable<DecodeE5M2>();

// --- scalar F16 <-> F32 ------------------------------------------------------

float F16ToF32Scalar(std::uint16_t h) {
  std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in F32
    return F32FromBits(F32Bits(std::ldexp(static_cast<float>(mant), -24)) | sign);
  }
  if (exp == 31) return F32FromBits(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
  return F32FromBits(sign | ((exp + 112) << 23) | (mant << 13));
}

std::uint16_t F32ToF16Scalar(float f) {
  std::uint32_t x = F32Bits(f);
  std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00 | static_cast<std::uint16_t>((x >> 13) & 0x3ff);
  if (x >= 0x477ff000u) return sign | 0x7c00;  // >= 65520: rounds to infinity
  if (x < 0x38800000u) {                        // below 2^-14: subnormal or zero
    // Scale so that the F16 subnormal step (2^-24) is 1, round to nearest even.
    float scaled = F32FromBits(x) * 16777216.0f;  // exact: a power of two
    return sign | static_cast<std::uint16_t>(std::nearbyint(scaled));
  }
  std::uint32_t odd = (x >> 13) & 1;
  x += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xfff + odd;
  return sign | static_cast<std::uint16_t>(x >> 13);
}

// --- BF16 <-> F32 (plain loops; vectorised) --------------------------------
// Kernels take byte pointers and load/store with memcpy: no alignment needed.

std::uint16_t F32ToBf16Bits(std::uint32_t x) {
  bool nan = (x & 0x7fffffffu) > 0x7f800000u;
  std::uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
  std::uint32_t quiet = (x >> 16) | 0x40;
  return static_cast<std::uint16_t>(nan ? quiet : rounded);
}

// The three plain loops share one signature (`table` only for F8) so that
// one dispatcher runs each as an AVX-512, AVX2 or baseline clone, picked at
// first use. (Not GCC's target_clones: its ifunc resolvers run before the
// sanitizers' runtimes start, and crash under ThreadSanitizer.)
using Kernel = void (*)(const std::byte* src, std::byte* dst, std::size_t n, const float* table);

[[gnu::always_inline]] inline void Bf16ToF32Body(const std::byte* src, std::byte* dst,
                                                 std::size_t n, const float*) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
    std::memcpy(dst + 4 * i, &u, 4);
  }
}

[[gnu::always_inline]] inline void F32ToBf16Body(const std::byte* src, std::byte* dst,
                                                 std::size_t n, const float*) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t x;
    std::memcpy(&x, src + 4 * i, 4);
    std::uint16_t h = F32ToBf16Bits(x);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

[[gnu::always_inline]] inline void F8ToF32Body(const std::byte* src, std::byte* dst,
                                               std::size_t n, const float* table) {
  for (std::size_t i = 0; i < n; ++i) {
    float f = table[static_cast<std::uint8_t>(src[i])];
    std::memcpy(dst + 4 * i, &f, 4);
  }
}

template <Kernel Body>
[[gnu::target("avx512f,avx512bw")]] void OnAvx512(const std::byte* src, std::byte* dst,
                                                  std::size_t n, const float* table) {
  Body(src, dst, n, table);
}

template <Kernel Body>
[[gnu::target("avx2")]] void OnAvx2(const std::byte* src, std::byte* dst, std::size_t n,
                                    const float* table) {
  Body(src, dst, n, table);
}

enum class Isa { kBaseline, kAvx2, kAvx512 };

Isa BestIsa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
      return Isa::kAvx512;
    }
    return __builtin_cpu_supports("avx2") ? Isa::kAvx2 : Isa::kBaseline;
  }();
  return isa;
}

template <Kernel Body>
void Dispatch(const std::byte* src, std::byte* dst, std::size_t n, const float* table = nullptr) {
  switch (BestIsa()) {
    case Isa::kAvx512: return OnAvx512<Body>(src, dst, n, table);
    case Isa::kAvx2: return OnAvx2<Body>(src, dst, n, table);
    case Isa::kBaseline: return Body(src, dst, n, table);
  }
}

void Bf16ToF32(const std::byte* src, std::byte* dst, std::size_t n) {
  Dispatch<Bf16ToF32Body>(src, dst, n);
}
void F32ToBf16(const std::byte* src, std::byte* dst, std::size_t n) {
  Dispatch<F32ToBf16Body>(src, dst, n);
}
void F8ToF32(const float* table, const std::byte* src, std::byte* dst, std::size_t n) {
  Dispatch<F8ToF32Body>(src, dst, n, table);
}

// --- F16 <-> F32: F16C, or the scalar code ----------------------------------

void F16ToF32Tail(const std::byte* src, std::byte* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    float f = F16ToF32Scalar(h);
    std::memcpy(dst + 4 * i, &f, 4);
  }
}

void F32ToF16Tail(const std::byte* src, std::byte* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    float f;
    std::memcpy(&f, src + 4 * i, 4);
    std::uint16_t h = F32ToF16Scalar(f);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

__attribute__((target("avx,f16c")))
void F16ToF32F16c(const std::byte* src, std::byte* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i_u*>(src + 2 * i));
    _mm256_storeu_ps(reinterpret_cast<float*>(dst + 4 * i), _mm256_cvtph_ps(h));
  }
  F16ToF32Tail(src + 2 * i, dst + 4 * i, n - i);
}

__attribute__((target("avx,f16c")))
void F32ToF16F16c(const std::byte* src, std::byte* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 f = _mm256_loadu_ps(reinterpret_cast<const float*>(src + 4 * i));
    _mm_storeu_si128(reinterpret_cast<__m128i_u*>(dst + 2 * i),
                     _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT));
  }
  F32ToF16Tail(src + 4 * i, dst + 2 * i, n - i);
}

std::atomic<bool> g_force_scalar{false};
bool HasF16c() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  }();
  return has;
}

bool UseF16c() { return HasF16c() && !g_force_scalar.load(std::memory_order_relaxed); }

void F16ToF32(const std::byte* src, std::byte* dst, std::size_t n) {
  UseF16c() ? F16ToF32F16c(src, dst, n) : F16ToF32Tail(src, dst, n);
}

void F32ToF16(const std::byte* src, std::byte* dst, std::size_t n) {
  UseF16c() ? F32ToF16F16c(src, dst, n) : F32ToF16Tail(src, dst, n);
}

// --- through F32 ------------------------------------------------------------

void ToF32(DType from, const std::byte* src, std::byte* dst, std::size_t n) {
  switch (from) {
    case DType::kBF16: return Bf16ToF32(src, dst, n);
    case DType::kF16: return F16ToF32(src, dst, n);
    case DType::kF8E4M3: return F8ToF32(kE4M3.data(), src, dst, n);
    case DType::kF8E5M2: return F8ToF32(kE5M2.data(), src, dst, n);
    default: std::memcpy(dst, src, 4 * n); return;  // F32
  }
}

void FromF32(DType to, const std::byte* src, std::byte* dst, std::size_t n) {
  switch (to) {
    case DType::kBF16: return F32ToBf16(src, dst, n);
    case DType::kF16: return F32ToF16(src, dst, n);
    default: std::memcpy(dst, src, 4 * n); return;  // F32
  }
}

std::size_t Bytes(DType dtype) { return std::max(1u, DTypeBits(dtype) / 8); }

}  // namespace

bool IsConvertibleSource(DType d) {
  return d == DType::kBF16 || d == DType::kF16 || d == DType::kF32 || d == DType::kF8E4M3 ||
         d == DType::kF8E5M2;
}

bool IsConversionTarget(DType d) {
  return d == DType::kBF16 || d == DType::kF16 || d == DType::kF32;
}

DType ConvertedDType(DType dtype, DType target) {
  return IsConvertibleSource(dtype) && IsConversionTarget(target) ? target : dtype;
}

void ConvertElements(DType from, DType to, const std::byte* src, std::byte* dst,
                     std::size_t count) {
  if (count == 0) return;  // src/dst may then be null
  if (from == to) {
    std::memcpy(dst, src, count * Bytes(from));
    return;
  }
  if (from == DType::kF32) return FromF32(to, src, dst, count);
  if (to == DType::kF32) return ToF32(from, src, dst, count);
  // Neither side is F32: through an F32 block that stays in L1.
  const std::size_t in = Bytes(from), out = Bytes(to);
  alignas(64) std::byte block[4 * kBlock];
  for (std::size_t i = 0; i < count; i += kBlock) {
    std::size_t n = std::min(kBlock, count - i);
    ToF32(from, src + i * in, block, n);
    FromF32(to, block, dst + i * out, n);
  }
}

bool ConvertUsesF16c() { return UseF16c(); }

void ForceScalarF16ForTesting(bool scalar) {
  g_force_scalar.store(scalar, std::memory_order_relaxed);
}

}  // namespace shardload
