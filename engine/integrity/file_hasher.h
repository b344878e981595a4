// HashFile: the SHA-256 of one file, read front to back in large reads with
// several in flight (io_uring; a pread loop when no ring can be set up), each
// read's bytes hashed while the next ones are read. O_DIRECT reads are DMA
// into a small ring of aligned buffers (no kernel copy, no page cache
// filled), buffered ones a kernel copy that leaves the bytes in cache for
// the hash; kAuto takes the page cache for a file mostly in it, else O_DIRECT.
// A file taken through the page cache is hashed straight from a mapping of
// it when it is mostly cached (integrity/mapped_hash.h: no copy at all).
// Thread-safe: each call uses only its own ring, buffers and descriptors.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "index/shard_file.h"
#include "shardload/error.h"
#include "shardload/stats.h"
#include "shardload/verify.h"

namespace shardload {

struct HashOptions {
  std::uint64_t read_size = 1ULL << 20;  // bytes per read (rounded up to 4 KiB)
  unsigned depth = 4;                    // O_DIRECT reads in flight (>= 1)
  // The size the file must have (from its header); a file of another size
  // fails with kTruncated naming both sizes. nullopt: whatever it has.
  std::optional<std::uint64_t> expected_size;
  // kAuto: buffered when at least half the file is in the page cache, else
  // O_DIRECT where the file system accepts it; kDirect: O_DIRECT or
  // kUnsupported; kBuffered: through the page cache.
  IoMode mode = IoMode::kBuffered;
  // Reads in flight when the file is read through the page cache: io_uring
  // completes a read of cached pages as it is submitted, so more depth only
  // moves each buffer out of L2 before it is hashed (measured: 1.35x the
  // user time at depth 4), while the kernel's readahead runs ahead of
  // reads of uncached pages.
  unsigned buffered_depth = 1;
  // A file read through the page cache: kAuto hashes it from a mapping when
  // at least half of it is cached (the residency probe kAuto's mode uses),
  // else copies it; kMapped and kCopied force one way.
  CachedRead cached = CachedRead::kAuto;
  std::uint64_t map_window = 32ULL << 20;  // bytes populated and hashed at a time
  // Test seam: called with each mapped window's file offset once the window
  // is populated, just before it is hashed (tests truncate the file there).
  std::function<void(std::uint64_t)> before_window = {};
  // A checkpoint's shard (its kept descriptor, index/shard_file.h): the file
  // is read through it, never reopened by path; null: PATH is opened.
  std::shared_ptr<const internal::ShardFile> shard = {};
};

struct FileHash {
  std::string sha256;             // 64 lowercase hex digits
  std::uint64_t bytes = 0;        // bytes hashed
  std::uint64_t bytes_direct = 0; // of those, read with O_DIRECT
  bool mapped = false;            // hashed from a mapping (no reads)
  bool used_uring = false;
};

// Errors: kIoError (open/read, errno attached), kTruncated (the file ended
// early or has another size than expected), kUnsupported (kDirect on a file
// system that refuses O_DIRECT), kNotRegularFile, kResourceExhausted.
Result<FileHash> HashFile(const std::string& path, const HashOptions& options = {});

}  // namespace shardload
