// Safetensors files held in memory rather than on disk: parsing one (every
// check a file on disk gets, with the same messages; nothing copied) and
// serializing tensors into one buffer (the writer's exact bytes, writer.h).
// Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/metadata.h"
#include "shardload/writer.h"

namespace shardload {

// One tensor of a parsed buffer.
struct BufferTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;  // empty for a scalar
  std::uint64_t offset = 0;          // of its first byte, from the buffer's start
  std::uint64_t size = 0;            // bytes; offset + size <= the buffer's size
};

struct BufferHeader {
  std::optional<Metadata> metadata;   // nullopt: absent or null
  std::vector<BufferTensor> tensors;  // in file (offset) order
};

// Parses and validates the whole safetensors file held in DATA (prefix,
// header and data) as Checkpoint::Open validates a file: the same checks in
// the same order, the same error codes and messages. NAME stands for the
// path in errors (e.g. "<bytes>").
Result<BufferHeader> ParseSafetensorsBuffer(std::span<const std::byte> data,
                                            const std::string& name);

// The file WriteSafetensors would write for TENSORS and METADATA, laid out
// (validated with the same refusals, NAME standing for the path in errors).
struct SerializedLayout {
  std::string header;              // the 8-byte prefix, JSON and padding
  std::vector<std::size_t> order;  // indices into TENSORS, in file order
  std::uint64_t total_size = 0;    // header.size() + every tensor's bytes
};
Result<SerializedLayout> LayOutSafetensorsBuffer(std::span<const TensorData> tensors,
                                                 const std::optional<Metadata>& metadata,
                                                 const std::string& name);

// Writes the file LAYOUT describes into OUT (exactly layout.total_size
// bytes): the header, then each tensor's bytes (or its filler's).
// REQUIRES: LAYOUT came from LayOutSafetensorsBuffer(TENSORS, ...).
// Errors: kInvalidArgument when OUT has another size; kInternal when a
// filler throws.
Status SerializeSafetensorsInto(std::span<const TensorData> tensors,
                                const SerializedLayout& layout, std::span<std::byte> out,
                                const std::string& name);

}  // namespace shardload
