// VerifyLoad: checks the files a load read against a manifest. A shard whose
// every tensor the load holds whole, byte for byte as in the file, is hashed
// from that memory (only its header, and any bytes no listed tensor covers,
// are read again: a few KiB); any other shard the load read from (a
// selection, rank slices, converted dtypes) is hashed from storage, a second
// read of the whole file. Shards the load did not read from are not checked.
// Thread-safe: reads only its arguments; hashes on its own threads.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload {

// One tensor a load read from: `data` holds its file bytes unchanged, or is
// null when the load kept only a slice or a converted copy.
struct LoadedBytes {
  const TensorInfo* tensor = nullptr;
  const std::byte* data = nullptr;
};

struct LoadCheck {
  unsigned from_memory = 0;   // shards hashed from the loaded bytes
  unsigned from_storage = 0;  // shards hashed by reading them again
  std::string Describe() const;
};

// Errors: kChecksumMismatch naming the shard (expected and computed digests
// in the detail), kBadManifest (unreadable, or no entry for a shard read),
// kIoError / kTruncated from reading a shard.
Result<LoadCheck> VerifyLoad(const Checkpoint& checkpoint, const std::string& manifest_path,
                             std::span<const LoadedBytes> loaded, unsigned threads);

}  // namespace shardload
