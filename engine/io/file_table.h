// The shards a load reads, each opened once per way it is read: a buffered
// descriptor (O_RDONLY | O_CLOEXEC) and, where some range is read with
// O_DIRECT, a second one with O_DIRECT; plus the O_DIRECT alignment they
// require (statx STATX_DIOALIGN). The shards of a Checkpoint are never
// reopened by path: the buffered descriptor is the one the checkpoint kept
// when it read the header, the O_DIRECT one the same inode reopened
// (index/shard_file.h); a shard changed in place since is refused.
// Thread-compatible while descriptors are being opened (Open, OpenDirect);
// thread-safe after: read-only, the descriptors are shared by all workers
// (pread and io_uring take explicit offsets).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "index/shard_file.h"
#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "shardload/stats.h"
#include "util/fd.h"

namespace shardload {

class FileTable {
 public:
  // Opens paths[i] for every i with needed[i]; others stay closed (fd -1):
  // buffered descriptors unless mode is kDirect, O_DIRECT descriptors when
  // it is. The alignment is looked up unless mode is kBuffered.
  // Fails on the first file that cannot be opened: kIoError naming it,
  // kUnsupported when its file system refuses O_DIRECT, kNotRegularFile when
  // it has become a FIFO, socket or device (never blocking on a FIFO).
  static Result<FileTable> Open(std::span<const std::string> paths,
                                std::span<const bool> needed, IoMode mode);
  // The same for the shards of CHECKPOINT, through the files it kept
  // (by path only for a checkpoint assembled without files, in tests);
  // also kShardChanged (or kTruncated) for a shard changed since it was
  // opened, naming it.
  static Result<FileTable> Open(const Checkpoint& checkpoint, std::span<const bool> needed,
                                IoMode mode);
  // One file through SHARD's kept descriptor (nullptr: by PATH).
  static Result<FileTable> OpenOne(const std::string& path,
                                   std::shared_ptr<const internal::ShardFile> shard, IoMode mode);

  // Opens the O_DIRECT descriptor of `file` if it is not open yet (the file
  // must have been needed). kUnsupported when its file system refuses O_DIRECT.
  Status OpenDirect(std::uint32_t file);

  std::size_t size() const { return files_.size(); }
  // The descriptor for buffered or O_DIRECT reads; -1 if not open.
  int fd(std::uint32_t file, bool direct) const {
    return direct ? files_[file].direct.get() : files_[file].buffered;
  }
  const std::string& path(std::uint32_t file) const { return files_[file].path; }
  // All descriptors, -1 for those not open (for io_uring_register_files):
  // size() buffered ones, then size() O_DIRECT ones; see FixedIndex.
  std::vector<int> Descriptors() const;
  std::uint32_t FixedIndex(std::uint32_t file, bool direct) const {
    return direct ? static_cast<std::uint32_t>(files_.size()) + file : file;
  }
  // The largest O_DIRECT alignment (offset and memory) over the open files:
  // statx STATX_DIOALIGN where reported, else 4096. 1 in buffered mode.
  std::uint64_t alignment() const { return alignment_; }

 private:
  struct File {
    std::string path;
    std::shared_ptr<const internal::ShardFile> shard;  // null: opened by path
    FileDescriptor own;  // the buffered descriptor when it is not the shard's kept one
    int buffered = -1;   // the buffered descriptor in use (own or kept)
    FileDescriptor direct;
  };
  Status OpenNeeded(std::span<const bool> needed, IoMode mode);
  Status OpenBuffered(File& f);

  std::vector<File> files_;
  std::uint64_t alignment_ = 1;
};

// Test hook: while one lives, opening a descriptor with O_DIRECT fails as on
// a file system that refuses it (EINVAL). Process-wide; not nestable.
class ScopedRefuseDirect {
 public:
  ScopedRefuseDirect();
  ~ScopedRefuseDirect();
  ScopedRefuseDirect(const ScopedRefuseDirect&) = delete;
  ScopedRefuseDirect& operator=(const ScopedRefuseDirect&) = delete;
  static bool active();
};

}  // namespace shardload
