// ReadConverted: reads strided byte ranges of files through a bounded
// staging buffer per thread (at most `chunk_size` bytes each) and converts
// each range's elements into its destination (convert.h), so a converted
// load never holds an unconverted copy of more than one chunk per thread.
// This is the conversion's own staging until the engine's I/O staging
// (issue 11) can call ConvertElements in its copy-out.
// Thread-safe: runs its own threads; the segments' destinations must not
// overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "shardload/dtype.h"
#include "shardload/error.h"

namespace shardload {

// `count` runs of `length` source bytes: run i is file bytes
// [offset + i*src_stride, +length), converted from `from` to `to` into
// dst + i*dst_stride. length is a whole number of `from` elements.
struct ConvertSegment {
  std::uint32_t file = 0;  // index into fds / paths
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t count = 1;
  std::uint64_t src_stride = 0;
  std::byte* dst = nullptr;
  std::uint64_t dst_stride = 0;
  DType from = DType::kU8;
  DType to = DType::kU8;
  std::uint32_t tag = 0;  // index into tag_names, for errors
};

struct ConvertReadOptions {
  unsigned threads = 1;
  std::uint64_t chunk_size = 4ULL << 20;  // staging bytes per thread
  std::span<const int> fds;               // per file
  std::span<const std::string> paths;     // per file, for errors
  std::span<const std::string> tag_names; // per tag (tensor names), for errors
  // Called (concurrently, from the threads) with the destination range a
  // chunk is about to be converted into, e.g. to fault its pages in
  // (buffers/fault_in_policy.h). May be empty.
  std::function<void(std::byte*, std::size_t)> before_write;
  // Called (concurrently, from the threads) with the destination bytes each
  // piece filled, once converted (e.g. for progress). May be empty.
  std::function<void(std::uint64_t)> after_write;
};

struct ConvertReadStats {
  std::uint64_t bytes_read = 0;     // source bytes read (gaps between runs included)
  std::uint64_t bytes_written = 0;  // destination bytes filled
  std::uint64_t read_ops = 0;
};

// Errors: kIoError (errno), kTruncated (a file ended early), naming the file
// and the tensor; kResourceExhausted. On error the destinations are partly
// written.
Result<ConvertReadStats> ReadConverted(std::span<const ConvertSegment> segments,
                                       const ConvertReadOptions& options);

}  // namespace shardload
