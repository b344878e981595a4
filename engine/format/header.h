// Reads and validates one safetensors header exactly as strictly as the
// reference reader (docs/format.md), and stricter on duplicate keys.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/metadata.h"

namespace shardload::format {

inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;
inline constexpr int kMaxJsonDepth = 127;

struct HeaderTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // relative to the start of the data buffer
  std::uint64_t end = 0;
};

struct Header {
  std::uint64_t header_size = 0;     // N
  std::optional<Metadata> metadata;  // nullopt: absent or null; keys in file order
  std::vector<HeaderTensor> tensors;  // in JSON order
};

// Steps 4-8 of the reference algorithm on the N header bytes, for a file of
// `file_size` bytes. `path` only names the file in errors.
// Within step 5, lexical errors (syntax, depth > kMaxJsonDepth, numbers out
// of double range, escapes that decode to invalid UTF-8) are reported first,
// then the first schema error in document order. A lone surrogate escape
// (\ud800 or \udc00 unpaired) is kInvalidUtf8, like the raw bytes it encodes.
Result<Header> ParseHeader(std::string_view json, std::uint64_t file_size,
                           const std::string& path);

// Steps 1-8 on an open file descriptor: pread of the prefix and the header
// only; memory bounded by N. `path` only names the file in errors.
Result<Header> ReadHeader(int fd, std::uint64_t file_size,
                          const std::string& path);

// Steps 1-8 on a whole file held in memory (DATA: its bytes, prefix
// included): the same checks and messages as ReadHeader, nothing copied (the
// JSON is parsed in place). `path` only names the buffer in errors.
Result<Header> ParseHeaderBytes(std::span<const std::byte> data, const std::string& path);

// Opens `path` (following symlinks; regular files only) and reads its header.
Result<Header> ReadHeaderFile(const std::string& path);

}  // namespace shardload::format
