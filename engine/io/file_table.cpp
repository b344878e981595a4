// FileTable: opens shards once (regular files only); finds their O_DIRECT
// alignment.
// Thread-compatible while built, thread-safe after.
#include "io/file_table.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "util/errno_error.h"

namespace shardload {
namespace {

constexpr std::uint64_t kDefaultDirectAlignment = 4096;

// statx STATX_DIOALIGN (Linux 6.1+): the larger of the offset and memory
// alignments; the default where the kernel or file system does not say.
std::uint64_t DirectAlignment(int fd) {
  struct statx st = {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) != 0 ||
      (st.stx_mask & STATX_DIOALIGN) == 0 || st.stx_dio_offset_align == 0 ||
      st.stx_dio_mem_align == 0) {
    return kDefaultDirectAlignment;
  }
  return std::max<std::uint64_t>(st.stx_dio_offset_align, st.stx_dio_mem_align);
}

bool IsPowerOfTwo(std::uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// A shard swapped since the checkpoint was described may be a FIFO (whose
// open and reads would block: hence O_NONBLOCK until this check) or a device
// (which would read forever, or zeros). A directory is left to the read,
// which fails with EISDIR naming the offset. O_NONBLOCK is then cleared: on
// a file system without non-blocking reads, io_uring would complete a read
// that has to wait with -EAGAIN instead of waiting.
Status CheckOpened(const std::string& path, int fd) {
  struct stat st = {};
  if (::fstat(fd, &st) != 0) return ErrnoError(path, "fstat", errno);
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kNotRegularFile, path, "",
                     "the shard is no longer a regular file (it was replaced after the "
                     "checkpoint was opened)");
  }
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoError(path, "fcntl", errno);
  }
  return {};
}

}  // namespace

Result<FileTable> FileTable::Open(std::span<const std::string> paths,
                                  std::span<const bool> needed, bool direct) {
  FileTable table;
  table.direct_ = direct;
  table.files_.resize(paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) {
    File& f = table.files_[i];
    f.path = paths[i];
    if (!needed[i]) continue;
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (direct ? O_DIRECT : 0);
    f.fd = FileDescriptor(::open(f.path.c_str(), flags));
    if (!f.fd.valid()) {
      int err = errno;
      if (direct && err == EINVAL) {
        Error e = MakeError(ErrorCode::kUnsupported, f.path, "",
                            "the file system refuses O_DIRECT (open: EINVAL)");
        e.sys_errno = err;
        return e;
      }
      return ErrnoError(f.path, "open", err);
    }
    if (Status s = CheckOpened(f.path, f.fd.get()); !s) return std::move(s).error();
    if (direct) {
      std::uint64_t a = DirectAlignment(f.fd.get());
      if (!IsPowerOfTwo(a)) a = kDefaultDirectAlignment;
      table.alignment_ = std::max(table.alignment_, a);
    }
  }
  return table;
}

std::vector<int> FileTable::Descriptors() const {
  std::vector<int> fds;
  fds.reserve(files_.size());
  for (const File& f : files_) fds.push_back(f.fd.get());
  return fds;
}

}  // namespace shardload
