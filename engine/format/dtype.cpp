// The dtype table: names and bit widths in the reference's enum order.
#include <array>

#include "shardload/dtype.h"

namespace shardload {
namespace {

struct DTypeRow {
  std::string_view name;
  unsigned bits;
};

constexpr std::array<DTypeRow, kNumDTypes> kTable = {{
    {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},
    {"I8", 8}, {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8},
    {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16},
    {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32},
    {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
}};

}  // namespace

std::string_view DTypeName(DType dtype) {
  return kTable[static_cast<std::size_t>(dtype)].name;
}

unsigned DTypeBits(DType dtype) {
  return kTable[static_cast<std::size_t>(dtype)].bits;
}

std::optional<DType> ParseDType(std::string_view name) {
  for (std::size_t i = 0; i < kTable.size(); ++i) {
    if (kTable[i].name == name) return static_cast<DType>(i);
  }
  return std::nullopt;
}

}  // namespace shardload
