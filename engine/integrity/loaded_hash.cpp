// VerifyLoad: per shard read by the load, hash the header and any uncovered
// bytes with pread and the tensors from memory, in file order; or the whole
// file from storage when the load does not hold all of it.
// Thread-safe: the hashing threads share only read-only inputs; each writes
// its own error slot.
#include "integrity/loaded_hash.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <optional>
#include <vector>

#include "integrity/file_hasher.h"
#include "integrity/manifest.h"
#include "util/parallel.h"
#include "integrity/paths.h"
#include "integrity/sha256.h"
#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload {
namespace {

constexpr std::uint64_t kGapBuffer = 1ULL << 20;

// What one shard's check needs: its tensors in file order when all are held.
struct ShardWork {
  std::uint32_t shard = 0;
  bool whole = true;                   // every tensor of the shard held unchanged
  std::vector<LoadedBytes> tensors;    // sorted by offset
};

// Hashes bytes [from, to) of the open file.
Status HashRange(int fd, const std::string& path, std::uint64_t from, std::uint64_t to,
                 Sha256& sha, std::vector<std::byte>& buffer) {
  while (from < to) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(to - from, kGapBuffer));
    buffer.resize(std::max(buffer.size(), want));
    ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(from));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError(path, "pread at offset " + std::to_string(from), errno);
    if (n == 0) {
      return MakeError(ErrorCode::kTruncated, path, "",
                       "the file ended at byte " + std::to_string(from));
    }
    sha.Update({buffer.data(), static_cast<std::size_t>(n)});
    from += static_cast<std::uint64_t>(n);
  }
  return {};
}

// The digest of a shard whose tensors are all in memory.
Result<std::string> HashFromMemory(const ShardInfo& shard, const ShardWork& work) {
  FileDescriptor fd(::open(shard.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(shard.path, "open", errno);
  Sha256 sha;
  std::vector<std::byte> buffer;
  std::uint64_t pos = 0;
  for (const LoadedBytes& t : work.tensors) {
    if (t.tensor->size == 0) continue;
    if (Status s = HashRange(fd.get(), shard.path, pos, t.tensor->offset, sha, buffer); !s) {
      return std::move(s).error();
    }
    sha.Update({t.data, t.tensor->size});
    pos = t.tensor->offset + t.tensor->size;
  }
  if (Status s = HashRange(fd.get(), shard.path, pos, shard.file_size, sha, buffer); !s) {
    return std::move(s).error();
  }
  return sha.FinalHex();
}

// Groups the loaded tensors by shard; a shard is `whole` when the load holds
// every tensor the checkpoint lists in it, unchanged.
std::vector<ShardWork> GroupByShard(const Checkpoint& checkpoint,
                                    std::span<const LoadedBytes> loaded) {
  std::vector<std::optional<ShardWork>> by_shard(checkpoint.shards().size());
  for (const LoadedBytes& b : loaded) {
    auto& w = by_shard[b.tensor->shard];
    if (!w) w = ShardWork{b.tensor->shard, true, {}};
    if (b.data == nullptr) w->whole = false;
    w->tensors.push_back(b);
  }
  std::vector<ShardWork> out;
  for (auto& w : by_shard) {
    if (!w) continue;
    if (w->tensors.size() != checkpoint.shards()[w->shard].num_tensors) w->whole = false;
    std::sort(w->tensors.begin(), w->tensors.end(), [](const LoadedBytes& a, const LoadedBytes& b) {
      return a.tensor->offset < b.tensor->offset;
    });
    out.push_back(std::move(*w));
  }
  return out;
}

Result<std::string> HashShard(const ShardInfo& shard, const ShardWork& work) {
  if (work.whole) return HashFromMemory(shard, work);
  HashOptions options;
  options.expected_size = shard.file_size;
  auto hash = HashFile(shard.path, options);
  if (!hash) return std::move(hash).error();
  return std::move(hash->sha256);
}

}  // namespace

std::string LoadCheck::Describe() const {
  return std::to_string(from_memory) + " files verified from the loaded bytes, " +
         std::to_string(from_storage) + " by reading them again";
}

Result<LoadCheck> VerifyLoad(const Checkpoint& checkpoint, const std::string& manifest_path,
                             std::span<const LoadedBytes> loaded, unsigned threads) {
  auto manifest = ReadManifest(manifest_path);
  if (!manifest) return std::move(manifest).error();
  std::vector<ShardWork> work = GroupByShard(checkpoint, loaded);
  LoadCheck check;
  for (const ShardWork& w : work) {
    const ShardInfo& shard = checkpoint.shards()[w.shard];
    if (manifest->Find(ShardKey(shard)) == nullptr) {
      return MakeError(ErrorCode::kBadManifest, manifest_path, "",
                       "no digest for shard `" + ShardKey(shard) + "` (" + shard.path + ")");
    }
    ++(w.whole ? check.from_memory : check.from_storage);
  }
  std::sort(work.begin(), work.end(), [&](const ShardWork& a, const ShardWork& b) {
    return checkpoint.shards()[a.shard].file_size > checkpoint.shards()[b.shard].file_size;
  });
  std::vector<std::optional<Error>> errors(work.size());
  ForEachParallel(work.size(), threads, [&](std::size_t i) {
    const ShardInfo& shard = checkpoint.shards()[work[i].shard];
    try {
      auto digest = HashShard(shard, work[i]);
      if (!digest) {
        errors[i] = std::move(digest).error();
        return;
      }
      const std::string& expected = *manifest->Find(ShardKey(shard));
      if (*digest != expected) {
        errors[i] = MakeError(ErrorCode::kChecksumMismatch, shard.path, "",
                              "SHA-256 is " + *digest + "; the manifest " + manifest_path +
                                  " says " + expected);
      }
    } catch (const std::bad_alloc&) {
      errors[i] = MakeError(ErrorCode::kResourceExhausted, shard.path, "", "out of memory");
    }
  });
  for (auto& e : errors) {
    if (e) return std::move(*e);
  }
  return check;
}

}  // namespace shardload
