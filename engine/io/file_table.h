// The shards a load reads, each opened once per way it is read: a buffered
// descriptor (O_RDONLY | O_CLOEXEC) and, where some range is read with
// O_DIRECT, a second one with O_DIRECT; plus the O_DIRECT alignment they
// require (statx STATX_DIOALIGN).
// Thread-compatible while descriptors are being opened (Open, OpenDirect);
// thread-safe after: read-only, the descriptors are shared by all workers
// (pread and io_uring take explicit offsets).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

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

  // Opens the O_DIRECT descriptor of `file` if it is not open yet (the file
  // must have been needed). kUnsupported when its file system refuses O_DIRECT.
  Status OpenDirect(std::uint32_t file);

  std::size_t size() const { return files_.size(); }
  // The descriptor for buffered or O_DIRECT reads; -1 if not open.
  int fd(std::uint32_t file, bool direct) const {
    return (direct ? files_[file].direct : files_[file].buffered).get();
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
    FileDescriptor buffered;
    FileDescriptor direct;
  };
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
