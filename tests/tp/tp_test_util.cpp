// Helpers of the tensor-parallel tests (see tp_test_util.h).
#include "tp/tp_test_util.h"

#include <cstring>

#include <doctest/doctest.h>

namespace shardload::tp::test {

TensorInfo MakeTensor(std::string name, DType dtype, std::vector<std::uint64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  std::uint64_t bits = DTypeBits(dtype);
  for (std::uint64_t d : t.shape) bits *= d;
  REQUIRE(bits % 8 == 0);
  t.size = bits / 8;
  return t;
}

Plan MustParse(std::string_view json) {
  Result<Plan> plan = ParsePlanJson(json, "plan.json");
  if (!plan) FAIL(plan.error().ToString());
  return std::move(*plan);
}

LocalSlice MustSlice(const Plan& plan, const TensorInfo& tensor, unsigned rank,
                     unsigned world) {
  Result<LocalSlice> slice = SliceFor(plan, tensor, rank, world);
  if (!slice) FAIL(slice.error().ToString());
  return std::move(*slice);
}

std::vector<std::uint8_t> Apply(const LocalSlice& slice,
                                const std::vector<std::uint8_t>& src,
                                std::vector<int>* cover) {
  std::vector<std::uint8_t> local(slice.size, slice.zero_fill ? 0x00 : 0xA5);
  if (cover != nullptr) cover->assign(slice.size, 0);
  for (const Run& s : slice.runs) {
    REQUIRE(s.length > 0);
    REQUIRE(s.count >= 1);
    for (std::uint64_t i = 0; i < s.count; ++i) {
      std::uint64_t from = s.src_offset + i * s.src_stride;
      std::uint64_t to = s.dst_offset + i * s.dst_stride;
      REQUIRE(from + s.length <= src.size());
      REQUIRE(to + s.length <= local.size());
      std::memcpy(local.data() + to, src.data() + from, s.length);
      if (cover != nullptr) {
        for (std::uint64_t k = 0; k < s.length; ++k) ++(*cover)[to + k];
      }
    }
  }
  return local;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> IndexRanges(
    const LocalSlice& slice, const TensorInfo& tensor) {
  REQUIRE(slice.split_dim >= 0);
  std::uint64_t row_bits = DTypeBits(tensor.dtype);
  const auto d = static_cast<std::size_t>(slice.split_dim);
  for (std::size_t i = d + 1; i < tensor.shape.size(); ++i) row_bits *= tensor.shape[i];
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (const Run& s : slice.runs) {
    std::uint64_t begin = s.src_offset * 8 / row_bits;
    out.emplace_back(begin, begin + s.length * 8 / row_bits);
  }
  return out;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> ByteRanges(const LocalSlice& slice) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (const Run& s : slice.runs) {
    for (std::uint64_t i = 0; i < s.count; ++i) {
      std::uint64_t from = s.src_offset + i * s.src_stride;
      out.emplace_back(from, from + s.length);
    }
  }
  return out;
}

}  // namespace shardload::tp::test
