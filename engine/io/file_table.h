// The shards a load reads, each opened once (O_RDONLY | O_CLOEXEC, plus
// O_DIRECT in direct mode), with the O_DIRECT alignment they require.
// Thread-safe once built: read-only; the descriptors are shared by all
// workers (pread and io_uring take explicit offsets).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shardload/error.h"
#include "util/fd.h"

namespace shardload {

class FileTable {
 public:
  // Opens paths[i] for every i with needed[i]; others stay closed (fd -1).
  // Fails on the first file that cannot be opened: kIoError naming it,
  // kUnsupported when its file system refuses O_DIRECT, kNotRegularFile when
  // it has become a FIFO, socket or device (never blocking on a FIFO).
  static Result<FileTable> Open(std::span<const std::string> paths,
                                std::span<const bool> needed, bool direct);

  std::size_t size() const { return files_.size(); }
  int fd(std::uint32_t file) const { return files_[file].fd.get(); }
  const std::string& path(std::uint32_t file) const { return files_[file].path; }
  // All descriptors, -1 for files not opened (for io_uring_register_files).
  std::vector<int> Descriptors() const;
  // The largest O_DIRECT alignment (offset and memory) over the open files:
  // statx STATX_DIOALIGN where reported, else 4096. 1 when not direct.
  std::uint64_t alignment() const { return alignment_; }
  bool direct() const { return direct_; }

 private:
  struct File {
    std::string path;
    FileDescriptor fd;
  };
  std::vector<File> files_;
  std::uint64_t alignment_ = 1;
  bool direct_ = false;
};

}  // namespace shardload
