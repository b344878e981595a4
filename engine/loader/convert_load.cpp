// The conversion room (convert_load.h): converted layout, segment
// translation, the converted read and the converting copy out of a
// cooperative load's staging.
// Thread-safe: as convert_load.h says.
#include "loader/convert_load.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "convert/convert.h"

namespace shardload {
namespace {

constexpr std::uint64_t kAlignment = 64;

std::uint64_t ElementBytes(DType d) { return std::max(1u, DTypeBits(d) / 8); }

// The converted read alone: buffered preads through ReadConverted.
Result<LoadStats> ReadAlone(std::span<const ConvertSegment> converts,
                            const ConvertReadOptions& io) {
  auto read = ReadConverted(converts, io);
  if (!read) return std::move(read).error();
  LoadStats out;
  out.bytes = read->bytes_written;
  out.bytes_read = read->bytes_read;
  out.bytes_buffered = read->bytes_read;
  out.read_ops = read->read_ops;
  out.backend_reason = "dtype conversion: pread through a bounded staging buffer per worker";
  return out;
}

// Converted while copied out of the node's staging (whole elements:
// staging pieces are cut on the 4 KiB grid).
Result<LoadStats> ReadTogether(const ConvertJob& job, std::span<const Segment> segments,
                               const std::function<void(std::byte*, std::size_t)>& before_write,
                               const OwnReader& read_alone) {
  if (const Segment* odd = FirstUnaligned(segments, job.items)) {
    const TensorInfo& t = *job.items[odd->tag].source;
    return MakeError(ErrorCode::kUnsupported, job.checkpoint->shards()[t.shard].path, t.name,
                     "its bytes start at file offset " + std::to_string(t.offset) +
                         ", not on a " + std::string(DTypeName(t.dtype)) +
                         " element boundary: a cooperative load converts dtypes only of "
                         "element-aligned tensors; load alone (--no-cooperate)");
  }
  ConvertingSink sink(job.items, *job.layout, job.base, kPlanningBase, before_write);
  return RunCooperative(*job.coop, segments, sink, read_alone, false);
}

}  // namespace

Result<LoadStats> ReadConvertedItems(const ConvertJob& job) {
  const Checkpoint& checkpoint = *job.checkpoint;
  std::vector<int> fds;
  std::vector<std::string> paths, names;
  for (std::uint32_t f = 0; f < checkpoint.shards().size(); ++f) {
    fds.push_back(job.files->fd(f, false));  // buffered: the loader refuses kDirect
    paths.push_back(checkpoint.shards()[f].path);
  }
  for (const LoadItem& item : job.items) names.push_back(item.source->name);
  // Each item's segments from kPlanningBase, re-aimed at converted memory.
  std::vector<std::byte*> origin(job.items.size(), kPlanningBase);
  std::vector<Segment> segments = MakeSegments(job.items, origin);
  std::vector<ConvertSegment> converts =
      TranslateSegments(segments, kPlanningBase, job.items, *job.layout, job.base);
  FaultInPolicy* fault_in = job.fault_in;
  auto before_write = [fault_in](std::byte* dst, std::size_t n) { fault_in->BeforeRead(dst, n); };
  std::uint64_t converted_bytes = 0;
  for (const ConvertSegment& c : converts) {
    converted_bytes += c.count * (c.length / ElementBytes(c.from)) * ElementBytes(c.to);
  }
  ProgressMeter meter(converted_bytes, kProgressStep, job.progress);
  auto after_write = [&meter](std::uint64_t n) { meter.Add(n); };
  const ConvertReadOptions io{job.threads, job.chunk_size, fds,        paths,
                              names,       before_write,   after_write};
  auto read_alone = [&](std::span<const Segment>) { return ReadAlone(converts, io); };
  if (job.coop == nullptr) return read_alone({});
  auto read = ReadTogether(job, segments, before_write, read_alone);
  if (read) read->bytes = converted_bytes;
  return read;
}

ConvertedLayout LayOutConverted(std::span<const LoadItem> items, DType target) {
  ConvertedLayout out;
  for (const LoadItem& item : items) {
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
                                              std::span<const LoadItem> items,
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

const Segment* FirstUnaligned(std::span<const Segment> segments, std::span<const LoadItem> items) {
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
