// write_fixture DIR: writes a deterministic sharded checkpoint of every dtype
// into DIR with WriteCheckpoint, plus DIR/manifest.json describing what was
// asked for (tensors in order, shard limit, metadata). numpy_oracle.py
// recomputes every tensor's values from the same formulas with numpy and
// checks the files independently of the C++ reader.
// Single-threaded command-line tool.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "shardload/writer.h"

namespace {

using shardload::DType;

constexpr std::uint64_t kMaxShardSize = 4096;
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

struct Spec {
  std::string name;
  DType dtype;
  std::vector<std::uint64_t> shape;
  bool generated;  // written through TensorData::fill
};

// The formulas; numpy_oracle.py has the same ones. i: element, k: tensor.
double FloatValue(std::uint64_t i, std::uint64_t k) {
  return (static_cast<double>((i * 7 + k) % 64) - 32.0) * 0.125;
}

std::uint64_t IntValue(DType dtype, std::uint64_t i, std::uint64_t k) {
  switch (dtype) {
    case DType::kI8:
    case DType::kU8:
      return (i * 37 + k * 11) % 256;
    case DType::kI16:
    case DType::kU16:
      return (i * 1237 + k) % 65536;
    case DType::kI32:
    case DType::kU32:
      return (i * 2654435761ull + k) % (1ull << 32);
    default:
      return i * kGolden + k;  // I64, U64: modulo 2^64
  }
}

// IEEE binary16 bits of `v`. REQUIRES: v is 0 or a normal half with at most
// 11 significant bits (true for every FloatValue).
std::uint16_t HalfBits(double v) {
  if (v == 0) return 0;
  int exponent = 0;
  double fraction = std::frexp(std::fabs(v), &exponent);  // v = fraction * 2^exponent
  auto mantissa = static_cast<std::uint16_t>((fraction * 2 - 1) * 1024);
  auto biased = static_cast<std::uint16_t>(exponent - 1 + 15);
  return static_cast<std::uint16_t>((v < 0 ? 0x8000 : 0) | (biased << 10) | mantissa);
}

template <typename T>
void Put(std::vector<std::byte>& out, std::size_t at, T value) {
  for (std::size_t b = 0; b < sizeof(T); ++b) {
    out[at + b] = static_cast<std::byte>((static_cast<std::uint64_t>(value) >> (8 * b)) & 0xFF);
  }
}

// Element i of tensor k into `out` (little-endian).
void PutElement(DType dtype, std::uint64_t i, std::uint64_t k, std::vector<std::byte>& out) {
  unsigned bytes = shardload::DTypeBits(dtype) / 8;
  std::size_t at = static_cast<std::size_t>(i * bytes);
  float f = static_cast<float>(FloatValue(i, k));
  switch (dtype) {
    case DType::kBool:
      Put<std::uint8_t>(out, at, (i + k) % 3 == 0);
      break;
    case DType::kF16:
      Put<std::uint16_t>(out, at, HalfBits(FloatValue(i, k)));
      break;
    case DType::kBF16:
      Put<std::uint16_t>(out, at, std::bit_cast<std::uint32_t>(f) >> 16);
      break;
    case DType::kF32:
      Put<std::uint32_t>(out, at, std::bit_cast<std::uint32_t>(f));
      break;
    case DType::kF64:
      Put<std::uint64_t>(out, at, std::bit_cast<std::uint64_t>(FloatValue(i, k)));
      break;
    case DType::kC64:
      Put<std::uint32_t>(out, at, std::bit_cast<std::uint32_t>(f));
      Put<std::uint32_t>(out, at + 4,
                         std::bit_cast<std::uint32_t>(static_cast<float>(FloatValue(i + 1000, k))));
      break;
    default:
      for (unsigned b = 0; b < bytes; ++b) {
        out[at + b] = static_cast<std::byte>((IntValue(dtype, i, k) >> (8 * b)) & 0xFF);
      }
  }
}

bool IsRawBytes(DType dtype) {
  switch (dtype) {
    case DType::kF4:
    case DType::kF6E2M3:
    case DType::kF6E3M2:
    case DType::kF8E5M2:
    case DType::kF8E4M3:
    case DType::kF8E8M0:
    case DType::kF8E4M3Fnuz:
    case DType::kF8E5M2Fnuz:
      return true;
    default:
      return false;
  }
}

std::vector<std::byte> TensorBytes(const Spec& spec, std::uint64_t k) {
  std::uint64_t n = 1;
  for (auto d : spec.shape) n *= d;
  std::vector<std::byte> out(n * shardload::DTypeBits(spec.dtype) / 8);
  if (IsRawBytes(spec.dtype)) {  // no numpy type: a byte pattern
    for (std::size_t j = 0; j < out.size(); ++j)
      out[j] = static_cast<std::byte>((j * 29 + k * 3 + 1) & 0xFF);
    return out;
  }
  for (std::uint64_t i = 0; i < n; ++i) PutElement(spec.dtype, i, k, out);
  return out;
}

std::vector<Spec> Specs() {
  return {
      {"model.embed_tokens.weight", DType::kBF16, {64, 16}, false},
      {"model.layers.0.attn.q_proj.weight", DType::kF16, {32, 32}, false},
      {"model.layers.0.attn.q_proj.bias", DType::kF32, {32}, false},
      {"model.layers.0.mlp.big", DType::kF32, {640, 1024}, true},
      {"model.layers.0.norm", DType::kF64, {7}, false},
      {"model.layers.1.experts.\xc3\xbcn\xc3\xaf", DType::kI8, {3, 5}, false},
      {"counts", DType::kI64, {}, false},
      {"ids", DType::kU64, {9}, true},
      {"mask", DType::kBool, {4, 4}, false},
      {"quant.f4", DType::kF4, {8, 2}, false},
      {"quant.f6a", DType::kF6E2M3, {4, 4}, false},
      {"quant.f6b", DType::kF6E3M2, {8}, false},
      {"quant.e5m2", DType::kF8E5M2, {10}, false},
      {"quant.e4m3", DType::kF8E4M3, {10}, false},
      {"quant.e8m0", DType::kF8E8M0, {3}, false},
      {"quant.e4m3fnuz", DType::kF8E4M3Fnuz, {2, 2}, false},
      {"quant.e5m2fnuz", DType::kF8E5M2Fnuz, {5}, false},
      {"ints.i16", DType::kI16, {3, 3}, false},
      {"ints.u16", DType::kU16, {6}, false},
      {"ints.i32", DType::kI32, {2, 3}, false},
      {"ints.u32", DType::kU32, {4}, false},
      {"complex", DType::kC64, {3}, false},
      {"empty", DType::kU8, {0, 4}, false},
      {"emoji \xf0\x9f\x98\x80 \"quoted\" back\\slash\x7f", DType::kU8, {2}, false},
      {"layer_large.weight", DType::kF32, {40, 40}, false},
      {"tail.u8", DType::kU8, {100}, false},
  };
}

// A JSON array of the UTF-8 bytes of `s` (no escaping to get wrong).
std::string ByteArray(const std::string& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(static_cast<unsigned char>(s[i]));
  }
  return out + "]";
}

std::string Manifest(const std::vector<Spec>& specs) {
  std::string out = "{\"prefix\":\"model\",\"max_shard_size\":" + std::to_string(kMaxShardSize) +
                    ",\"shard_metadata\":{\"format\":\"pt\"},\"tensors\":[";
  for (std::size_t k = 0; k < specs.size(); ++k) {
    if (k > 0) out += ",\n";
    out += "{\"name_utf8\":" + ByteArray(specs[k].name) + ",\"dtype\":\"" +
           std::string(shardload::DTypeName(specs[k].dtype)) + "\",\"shape\":[";
    for (std::size_t d = 0; d < specs[k].shape.size(); ++d) {
      out += (d > 0 ? "," : "") + std::to_string(specs[k].shape[d]);
    }
    out += "],\"k\":" + std::to_string(k) + "}";
  }
  return out + "]}\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_fixture DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  std::vector<Spec> specs = Specs();
  std::vector<std::vector<std::byte>> data;
  std::vector<shardload::TensorData> tensors;
  for (std::size_t k = 0; k < specs.size(); ++k) data.push_back(TensorBytes(specs[k], k));
  for (std::size_t k = 0; k < specs.size(); ++k) {
    shardload::TensorData t;
    t.name = specs[k].name;
    t.dtype = specs[k].dtype;
    t.shape = specs[k].shape;
    if (specs[k].generated) {
      const std::vector<std::byte>* src = &data[k];
      t.fill = [src](std::uint64_t offset, std::span<std::byte> out) {
        std::copy_n(src->begin() + static_cast<std::ptrdiff_t>(offset), out.size(), out.begin());
      };
    } else {
      t.bytes = data[k];
    }
    tensors.push_back(std::move(t));
  }
  shardload::CheckpointWriteOptions options;
  options.max_shard_size = kMaxShardSize;
  options.shard_metadata = shardload::Metadata{{"format", "pt"}};
  shardload::Status status = shardload::WriteCheckpoint(dir, tensors, options);
  if (!status.ok()) {
    std::fprintf(stderr, "write_fixture: %s\n", status.error().ToString().c_str());
    return 1;
  }
  std::ofstream manifest(dir + "/manifest.json", std::ios::binary | std::ios::trunc);
  manifest << Manifest(specs);
  if (!manifest.flush()) {
    std::fprintf(stderr, "write_fixture: cannot write %s/manifest.json\n", dir.c_str());
    return 1;
  }
  return 0;
}
