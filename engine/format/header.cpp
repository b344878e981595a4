// Reads and validates one safetensors header in the reference reader's order
// (docs/format.md §3.1): the length prefix (steps 1-3), UTF-8 (4), the JSON
// (5, in header_json.cpp), then offsets, sizes and coverage (6-8).
// Thread-safe: pure functions; a file descriptor is only pread.
#include "format/header.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

#include "format/header_json.h"
#include "util/checked.h"
#include "util/clip_name.h"
#include "util/errno_error.h"
#include "util/fd.h"
#include "util/utf8.h"

namespace shardload::format {
namespace {

constexpr std::uint64_t kPrefixSize = 8;
constexpr std::size_t kMaxShownDims = 8;

// Well-known non-safetensors files, named in length-prefix errors: their
// first 8 bytes read as an absurd N.
std::string_view FileKindHint(std::string_view prefix) {
  if (prefix.substr(0, 8) == "version ") return " (this looks like a Git LFS pointer file)";
  if (prefix.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
    return " (this looks like a ZIP archive, e.g. a PyTorch .bin/.pt file)";
  }
  if (prefix.size() >= 2 && prefix[0] == '\x80' && prefix[1] >= 2 && prefix[1] <= 5) {
    return " (this looks like a Python pickle)";
  }
  if (prefix.substr(0, 1) == "<") return " (this looks like an HTML or XML page)";
  return "";
}

Error HeaderTooLarge(std::uint64_t n, const std::string& path, std::string_view hint) {
  return MakeError(ErrorCode::kHeaderTooLarge, path, {},
                   fmt::format("header length {} exceeds the limit of {} bytes{}", n,
                               kMaxHeaderSize, hint));
}

// Step 3: 8 + N must fit in the file.
Status CheckHeaderLength(std::uint64_t n, std::uint64_t file_size, const std::string& path,
                         std::string_view hint) {
  std::optional<std::uint64_t> end = CheckedAdd(kPrefixSize, n);
  if (end && *end <= file_size) return {};
  return MakeError(ErrorCode::kInvalidHeaderLength, path, {},
                   fmt::format("header length {} runs past the end of the file: 8 + {} > "
                               "file size {}{}",
                               n, n, file_size, hint));
}

Status CheckUtf8(std::string_view json, const std::string& path) {
  std::size_t bad = FindInvalidUtf8(json);
  if (bad == json.size()) return {};
  return MakeError(ErrorCode::kInvalidUtf8, path, {},
                   fmt::format("header is not valid UTF-8: invalid sequence starting with "
                               "byte 0x{:02X} at header byte {} (file offset {})",
                               static_cast<unsigned char>(json[bad]), bad, bad + kPrefixSize));
}

// "F32 [2, 3]", long shapes shortened.
std::string Describe(const HeaderTensor& tensor) {
  std::string dims;
  for (std::size_t i = 0; i < tensor.shape.size() && i < kMaxShownDims; ++i) {
    dims += fmt::format("{}{}", i == 0 ? "" : ", ", tensor.shape[i]);
  }
  if (tensor.shape.size() > kMaxShownDims) {
    dims += fmt::format(", ... ({} dims)", tensor.shape.size());
  }
  return fmt::format("{} [{}]", DTypeName(tensor.dtype), dims);
}

// Elements (the product of the shape, left to right, as the reference's
// try_fold does) times the dtype's bits; nullopt on overflow.
std::optional<std::uint64_t> TensorBits(const HeaderTensor& tensor) {
  std::uint64_t elements = 1;
  for (std::uint64_t dim : tensor.shape) {
    std::optional<std::uint64_t> product = CheckedMul(elements, dim);
    if (!product) return std::nullopt;
    elements = *product;
  }
  return CheckedMul(elements, DTypeBits(tensor.dtype));
}

// Step 7 for one tensor.
Status CheckTensorSize(const HeaderTensor& tensor, const std::string& path) {
  std::optional<std::uint64_t> bits = TensorBits(tensor);
  if (!bits) {
    return MakeError(ErrorCode::kValidationOverflow, path, tensor.name,
                     fmt::format("the element or bit count of {} overflows 64 bits",
                                 Describe(tensor)));
  }
  if (*bits % 8 != 0) {
    return MakeError(ErrorCode::kMisalignedSlice, path, tensor.name,
                     fmt::format("{} holds {} bits, not a whole number of bytes",
                                 Describe(tensor), *bits));
  }
  if (tensor.end - tensor.begin != *bits / 8) {
    return MakeError(ErrorCode::kTensorInvalidInfo, path, tensor.name,
                     fmt::format("data_offsets [{}, {}] span {} bytes but {} needs {} bytes",
                                 tensor.begin, tensor.end, tensor.end - tensor.begin,
                                 Describe(tensor), *bits / 8));
  }
  return {};
}

// Step 6 for one tensor: it must start where the previous one ended.
Status CheckContiguous(const HeaderTensor& tensor, const HeaderTensor* previous,
                       std::uint64_t start, const std::string& path) {
  if (tensor.begin == start && tensor.end >= tensor.begin) return {};
  std::string why;
  if (tensor.end < tensor.begin) {
    why = "ends before it begins";
  } else if (previous == nullptr) {
    why = "the first tensor in offset order must begin at 0";
  } else if (tensor.begin > start) {
    why = fmt::format("leaves a gap of {} bytes after tensor `{}`, which ends at {}",
                      tensor.begin - start, ClipName(previous->name), start);
  } else {
    why = fmt::format("overlaps tensor `{}`, which ends at {}", ClipName(previous->name), start);
  }
  return MakeError(ErrorCode::kInvalidOffset, path, tensor.name,
                   fmt::format("invalid data_offsets [{}, {}]: {}", tensor.begin, tensor.end,
                               why));
}

// Step 8: the tensors must cover the file exactly, up to its last byte.
Status CheckCoverage(std::uint64_t n, std::uint64_t data_end, std::uint64_t file_size,
                     const std::string& path) {
  std::optional<std::uint64_t> end = CheckedAdd(kPrefixSize + n, data_end);
  if (end && *end == file_size) return {};
  std::string detail;
  if (!end) {
    detail = fmt::format("tensor data would end at 8 + N ({}) + the last data offset ({}), "
                         "which overflows 64 bits; the file has {} bytes",
                         n, data_end, file_size);
  } else if (*end < file_size) {
    std::uint64_t extra = file_size - *end;
    detail = fmt::format("tensor data ends at file offset {} (8 + N {} + last end {}) but the "
                         "file has {} bytes: {} trailing byte{} not covered by any tensor",
                         *end, n, data_end, file_size, extra, extra == 1 ? "" : "s");
  } else {
    detail = fmt::format("tensor data ends at file offset {} (8 + N {} + last end {}) but the "
                         "file has only {} bytes: {} bytes short",
                         *end, n, data_end, file_size, *end - file_size);
  }
  return MakeError(ErrorCode::kIncompleteBuffer, path, {}, std::move(detail));
}

// Steps 6-8: walk the tensors in (begin, end) order.
Status ValidateLayout(const Header& header, std::uint64_t file_size, const std::string& path) {
  std::vector<const HeaderTensor*> order;
  order.reserve(header.tensors.size());
  for (const HeaderTensor& tensor : header.tensors) order.push_back(&tensor);
  // Stable: ties (zero-size tensors at one offset) keep their JSON order.
  std::stable_sort(order.begin(), order.end(), [](const HeaderTensor* a, const HeaderTensor* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  std::uint64_t start = 0;
  const HeaderTensor* previous = nullptr;
  for (const HeaderTensor* tensor : order) {
    if (Status s = CheckContiguous(*tensor, previous, start, path); !s.ok()) return s;
    start = tensor->end;
    previous = tensor;
    if (Status s = CheckTensorSize(*tensor, path); !s.ok()) return s;
  }
  return CheckCoverage(header.header_size, start, file_size, path);
}

// Reads exactly `size` bytes at `offset`, retrying on EINTR and short reads.
Status PreadFully(int fd, char* buffer, std::size_t size, std::uint64_t offset,
                  const std::string& path, std::string_view what) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t got = ::pread(fd, buffer + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      Error e = ErrnoError(path, fmt::format("pread of the {}", what), errno);
      e.offset = offset + done;
      return e;
    }
    if (got == 0) {
      Error e = MakeError(ErrorCode::kTruncated, path, {},
                          fmt::format("file ended at byte {} while reading the {} ({} bytes "
                                      "at offset {}); was it truncated while being read?",
                                      offset + done, what, size, offset));
      e.offset = offset + done;
      return e;
    }
    done += static_cast<std::size_t>(got);
  }
  return {};
}

std::string_view FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "an unknown file type";
}

Error HeaderTooSmall(std::uint64_t file_size, const std::string& path) {
  return MakeError(ErrorCode::kHeaderTooSmall, path, {},
                   fmt::format("the file has {} bytes, fewer than the 8-byte header "
                               "length prefix",
                               file_size));
}

// Steps 2-3: N from the 8-byte little-endian PREFIX, checked against the
// limit and the file size before anything is allocated.
Result<std::uint64_t> HeaderLength(const char (&prefix)[kPrefixSize], std::uint64_t file_size,
                                   const std::string& path) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < kPrefixSize; ++i) {
    n |= std::uint64_t{static_cast<unsigned char>(prefix[i])} << (8 * i);
  }
  std::string_view hint = FileKindHint(std::string_view(prefix, kPrefixSize));
  if (n > kMaxHeaderSize) return HeaderTooLarge(n, path, hint);
  if (Status s = CheckHeaderLength(n, file_size, path, hint); !s.ok()) {
    return std::move(s).error();
  }
  return n;
}

}  // namespace

Result<Header> ParseHeader(std::string_view json, std::uint64_t file_size,
                           const std::string& path) {
  // Steps 2-3 again, for callers that did not read `json` with ReadHeader.
  if (json.size() > kMaxHeaderSize) return HeaderTooLarge(json.size(), path, "");
  if (Status s = CheckHeaderLength(json.size(), file_size, path, ""); !s.ok()) {
    return std::move(s).error();
  }
  if (Status s = CheckUtf8(json, path); !s.ok()) return std::move(s).error();
  Result<Header> header = ParseHeaderJson(json, path);
  if (!header) return header;
  if (Status s = ValidateLayout(*header, file_size, path); !s.ok()) return std::move(s).error();
  return header;
}

Result<Header> ReadHeader(int fd, std::uint64_t file_size, const std::string& path) {
  if (file_size < kPrefixSize) return HeaderTooSmall(file_size, path);
  char prefix[kPrefixSize];
  if (Status s = PreadFully(fd, prefix, kPrefixSize, 0, path, "header length prefix");
      !s.ok()) {
    return std::move(s).error();
  }
  Result<std::uint64_t> n = HeaderLength(prefix, file_size, path);
  if (!n) return std::move(n).error();
  std::string json(static_cast<std::size_t>(*n), '\0');
  if (Status s = PreadFully(fd, json.data(), json.size(), kPrefixSize, path, "header");
      !s.ok()) {
    return std::move(s).error();
  }
  return ParseHeader(json, file_size, path);
}

Result<Header> ParseHeaderBytes(std::span<const std::byte> data, const std::string& path) {
  if (data.size() < kPrefixSize) return HeaderTooSmall(data.size(), path);
  char prefix[kPrefixSize];
  std::memcpy(prefix, data.data(), kPrefixSize);
  Result<std::uint64_t> n = HeaderLength(prefix, data.size(), path);
  if (!n) return std::move(n).error();
  std::string_view json(reinterpret_cast<const char*>(data.data()) + kPrefixSize,
                        static_cast<std::size_t>(*n));
  return ParseHeader(json, data.size(), path);
}

Result<Header> ReadHeaderFile(const std::string& path) {
  // O_NONBLOCK so that opening a FIFO by mistake cannot hang; it is cleared
  // once the file is known to be regular (where it has no effect anyway).
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError(path, "open", errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "fstat", errno);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kNotRegularFile, path, {},
                     fmt::format("not a regular file: {}", FileTypeName(st.st_mode)));
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoError(path, "fcntl", errno);
  }
  return ReadHeader(fd.get(), static_cast<std::uint64_t>(st.st_size), path);
}

}  // namespace shardload::format
