// HashFile: the SHA-256 of one file, read front to back in large reads with
// several in flight (io_uring; a pread loop when no ring can be set up), each
// read's bytes hashed while the next ones are read.
// Thread-safe: each call uses only its own ring, buffers and descriptor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "shardload/error.h"

namespace shardload {

struct HashOptions {
  std::uint64_t read_size = 1ULL << 20;  // bytes per read (rounded up to 4 KiB)
  unsigned depth = 4;                    // reads in flight (>= 1)
  // The size the file must have (from its header); a file of another size
  // fails with kTruncated naming both sizes. nullopt: whatever it has.
  std::optional<std::uint64_t> expected_size;
};

struct FileHash {
  std::string sha256;      // 64 lowercase hex digits
  std::uint64_t bytes = 0; // bytes hashed
  bool used_uring = false;
};

// Errors: kIoError (open/read, errno attached), kTruncated (the file ended
// early or has another size than expected), kResourceExhausted.
Result<FileHash> HashFile(const std::string& path, const HashOptions& options = {});

}  // namespace shardload
