// Safetensors files in memory (shardload/in_memory.h): the header parser run
// on a buffer (format/header.h, ParseHeaderBytes) and the writer's layout
// (writer_layout.h) copied into a caller's buffer instead of a file.
// Thread-safe: pure functions.
#include "shardload/in_memory.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "format/header.h"
#include "format/writer_layout.h"

namespace shardload {
namespace {

constexpr std::uint64_t kFillChunk = 8ull << 20;  // writer.h: fillers get <= 8 MiB

Status FillInto(const TensorData& t, std::span<std::byte> out, const std::string& name) {
  try {
    for (std::uint64_t done = 0; done < out.size(); done += kFillChunk) {
      std::uint64_t n = std::min<std::uint64_t>(kFillChunk, out.size() - done);
      t.fill(done, out.subspan(done, n));
    }
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, name, t.name,
                     std::string("the tensor's fill callback threw: ") + e.what());
  } catch (...) {
    return MakeError(ErrorCode::kInternal, name, t.name, "the tensor's fill callback threw");
  }
  return {};
}

}  // namespace

Result<BufferHeader> ParseSafetensorsBuffer(std::span<const std::byte> data,
                                            const std::string& name) {
  Result<format::Header> header = format::ParseHeaderBytes(data, name);
  if (!header) return std::move(header).error();
  std::uint64_t data_offset = 8 + header->header_size;
  BufferHeader out;
  out.metadata = std::move(header->metadata);
  for (format::HeaderTensor& t : header->tensors) {
    out.tensors.push_back({std::move(t.name), t.dtype, std::move(t.shape),
                           data_offset + t.begin, t.end - t.begin});
  }
  std::stable_sort(out.tensors.begin(), out.tensors.end(),
                   [](const BufferTensor& a, const BufferTensor& b) { return a.offset < b.offset; });
  return out;
}

Result<SerializedLayout> LayOutSafetensorsBuffer(std::span<const TensorData> tensors,
                                                 const std::optional<Metadata>& metadata,
                                                 const std::string& name) {
  format::TensorRefs refs;
  for (const TensorData& t : tensors) refs.push_back(&t);
  Result<format::SafetensorsLayout> layout = format::LayOutSafetensors(name, refs, metadata);
  if (!layout) return std::move(layout).error();
  std::uint64_t total = layout->header.size() + layout->data_size;
  return SerializedLayout{std::move(layout->header), std::move(layout->order), total};
}

Status SerializeSafetensorsInto(std::span<const TensorData> tensors,
                                const SerializedLayout& layout, std::span<std::byte> out,
                                const std::string& name) {
  if (out.size() != layout.total_size) {
    return MakeError(ErrorCode::kInvalidArgument, name, "",
                     "the output buffer is not of the serialized file's size");
  }
  std::memcpy(out.data(), layout.header.data(), layout.header.size());
  std::size_t at = layout.header.size();
  for (std::size_t index : layout.order) {
    const TensorData& t = tensors[index];
    std::span<std::byte> dest = out.subspan(at, t.fill ? out.size() - at : t.bytes.size());
    if (!t.fill) {
      if (!t.bytes.empty()) std::memcpy(dest.data(), t.bytes.data(), t.bytes.size());
      at += t.bytes.size();
      continue;
    }
    Result<std::uint64_t> size = format::ValidatedTensorSize(name, t);
    if (!size) return std::move(size).error();
    if (Status s = FillInto(t, dest.first(*size), name); !s.ok()) return s;
    at += *size;
  }
  return {};
}

}  // namespace shardload
