// Converted-load layout, segment translation and the converting copy out of
// a cooperative load's staging (convert_load.h).
// Thread-safe: pure functions; ConvertingSink: one thread.
#include "loader/convert_load.h"

#include <algorithm>

#include "convert/convert.h"

namespace shardload {
namespace {

constexpr std::uint64_t kAlignment = 64;

std::uint64_t ElementBytes(DType d) { return std::max(1u, DTypeBits(d) / 8); }

}  // namespace

ConvertedLayout LayOutConverted(std::span<const TpItem> items, DType target) {
  ConvertedLayout out;
  for (const TpItem& item : items) {
    DType to = ConvertedDType(item.source->dtype, target);
    std::uint64_t size = item.slice.size / ElementBytes(item.source->dtype) * ElementBytes(to);
    out.total = (out.total + kAlignment - 1) / kAlignment * kAlignment;
    out.dtype.push_back(to);
    out.size.push_back(size);
    out.position.push_back(out.total);
    out.total += size;
  }
  return out;
}

std::vector<ConvertSegment> TranslateSegments(std::span<const Segment> segments,
                                              const std::byte* origin,
                                              std::span<const TpItem> items,
                                              const ConvertedLayout& layout, std::byte* base) {
  std::vector<ConvertSegment> out;
  out.reserve(segments.size());
  for (const Segment& s : segments) {
    if (s.length == 0) continue;
    DType from = items[s.tag].source->dtype, to = layout.dtype[s.tag];
    std::uint64_t in = ElementBytes(from), o = ElementBytes(to);
    std::uint64_t at = static_cast<std::uint64_t>(s.dst - origin) / in * o;
    out.push_back(ConvertSegment{s.file, s.offset, s.length, s.count, s.src_stride,
                                 base + layout.position[s.tag] + at, s.dst_stride / in * o,
                                 from, to, s.tag});
  }
  return out;
}

const Segment* FirstUnaligned(std::span<const Segment> segments, std::span<const TpItem> items) {
  for (const Segment& s : segments) {
    const std::uint64_t in = ElementBytes(items[s.tag].source->dtype);
    if (s.offset % in != 0 || s.length % in != 0 || (s.count > 1 && s.src_stride % in != 0)) {
      return &s;
    }
  }
  return nullptr;
}

Status ConvertingSink::Copy(const coop::CopyRuns& runs) {
  const DType from = items_[runs.tag].source->dtype, to = layout_.dtype[runs.tag];
  const std::uint64_t in = ElementBytes(from), o = ElementBytes(to);
  const auto at = static_cast<std::uint64_t>(runs.dst - origin_);
  if (at % in != 0 || runs.length % in != 0 || runs.dst_stride % in != 0) {
    return MakeError(ErrorCode::kInternal, "", std::string(items_[runs.tag].source->name),
                     "a cooperative converted copy splits an element");
  }
  std::byte* dst = base_ + layout_.position[runs.tag] + at / in * o;
  const std::uint64_t stride = runs.dst_stride / in * o, count = runs.length / in;
  if (before_write_) before_write_(dst, (runs.rows - 1) * stride + count * o);
  for (std::uint64_t r = 0; r < runs.rows; ++r) {
    ConvertElements(from, to, runs.src + r * runs.src_stride, dst + r * stride, count);
  }
  return {};
}

}  // namespace shardload
