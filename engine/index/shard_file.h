// What a Checkpoint keeps of each shard from the moment its header was read:
// the descriptor the header was read through and the file's identity then
// (device, inode, size, modification time). Every later read of the shard
// goes through that descriptor, or a reopening of the same inode through
// /proc/self/fd/N (O_DIRECT), never through the path: a shard renamed over or
// relinked after the checkpoint was opened (a Hugging Face cache update) is
// still read from the file whose header was parsed. A file changed in place
// (another size or modification time) is refused, naming it.
//
// Descriptor budget: a shard's descriptor is kept while its number is below
// half the soft RLIMIT_NOFILE (kept fds take the lowest numbers, so this
// bounds the kept ones to half the limit, leaving the rest for the loads'
// O_DIRECT descriptors, rings, sockets). A shard past the budget keeps only
// its identity: each later open is by path and is refused (kShardChanged)
// unless it reaches the same device and inode with the same size and
// modification time. The soft limit is never raised (a process-wide setting
// a library does not own); `ulimit -n` raises it.
// Thread-safe: immutable after construction, shared by every copy of the
// Checkpoint (std::shared_ptr<const ShardFile>).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "shardload/error.h"
#include "util/fd.h"

namespace shardload::internal {

struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;  // modification time, ns since the epoch

  bool operator==(const FileIdentity&) const = default;
  // "device 8:1, inode 1234, 4096 bytes, modified 1700000000.000000001"
  std::string ToString() const;
};

FileIdentity IdentityOf(const struct stat& st);

class ShardFile {
 public:
  // FD: the descriptor the header was read through (taken over), or invalid
  // when past the budget; IDENTITY: its fstat then.
  ShardFile(std::string path, FileDescriptor fd, FileIdentity identity)
      : path_(std::move(path)), fd_(std::move(fd)), identity_(identity) {}

  const std::string& path() const { return path_; }
  // The kept descriptor (blocking, read-only); -1 when not kept.
  int fd() const { return fd_.get(); }
  bool kept() const { return fd_.valid(); }
  const FileIdentity& identity() const { return identity_; }

  // The file as it is now against the identity recorded: fstat of the kept
  // descriptor (stat of the path when not kept). kTruncated when it is
  // shorter, kShardChanged when longer or modified since (or, not kept, when
  // the path now names another file); kIoError when it cannot be stat'ed.
  Status CheckUnchanged() const;
  // FD, a descriptor just opened on this shard, is the recorded file,
  // unchanged: kShardChanged naming the difference otherwise.
  Status CheckSame(int fd) const;
  // A new descriptor on this shard with FLAGS (O_RDONLY | O_CLOEXEC are
  // added): /proc/self/fd/N of the kept descriptor, so the same inode
  // whatever the path names now; by path where there is no /proc or no kept
  // descriptor. -1 with errno set on failure. Callers CheckSame the result.
  int OpenAgain(int flags) const;

 private:
  std::string path_;
  FileDescriptor fd_;
  FileIdentity identity_;
};

// Whether a descriptor numbered FD may be kept (the budget above).
bool WithinKeepBudget(int fd);

}  // namespace shardload::internal
