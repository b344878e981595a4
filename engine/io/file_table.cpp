// FileTable: opens shards (regular files only), buffered and/or O_DIRECT;
// finds their O_DIRECT alignment.
// Thread-compatible while descriptors are opened, thread-safe after; the
// ScopedRefuseDirect flag is an atomic.
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

std::atomic<bool> g_refuse_direct{false};

Error DirectRefused(const std::string& path) {
  Error e = MakeError(ErrorCode::kUnsupported, path, "",
                      "the file system refuses O_DIRECT (open: EINVAL)");
  e.sys_errno = EINVAL;
  return e;
}

// Opens `path` read-only, with O_DIRECT when `direct`; checks what it is.
Result<FileDescriptor> OpenShard(const std::string& path, bool direct) {
  if (direct && g_refuse_direct.load(std::memory_order_relaxed)) return DirectRefused(path);
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (direct ? O_DIRECT : 0);
  FileDescriptor fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    int err = errno;
    if (direct && err == EINVAL) return DirectRefused(path);
    return ErrnoError(path, "open", err);
  }
  if (Status s = CheckOpened(path, fd.get()); !s) return std::move(s).error();
  return fd;
}

}  // namespace

Result<FileTable> FileTable::Open(std::span<const std::string> paths,
                                  std::span<const bool> needed, IoMode mode) {
  FileTable table;
  table.files_.resize(paths.size());
  const bool direct = mode == IoMode::kDirect;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    File& f = table.files_[i];
    f.path = paths[i];
    if (!needed[i]) continue;
    auto fd = OpenShard(f.path, direct);
    if (!fd) return std::move(fd).error();
    if (mode != IoMode::kBuffered) {
      std::uint64_t a = DirectAlignment(fd->get());
      if (!IsPowerOfTwo(a)) a = kDefaultDirectAlignment;
      table.alignment_ = std::max(table.alignment_, a);
    }
    (direct ? f.direct : f.buffered) = std::move(*fd);
  }
  return table;
}

Status FileTable::OpenDirect(std::uint32_t file) {
  File& f = files_[file];
  if (f.direct.valid()) return {};
  auto fd = OpenShard(f.path, /*direct=*/true);
  if (!fd) return std::move(fd).error();
  f.direct = std::move(*fd);
  return {};
}

std::vector<int> FileTable::Descriptors() const {
  std::vector<int> fds;
  fds.reserve(2 * files_.size());
  for (const File& f : files_) fds.push_back(f.buffered.get());
  for (const File& f : files_) fds.push_back(f.direct.get());
  return fds;
}

ScopedRefuseDirect::ScopedRefuseDirect() { g_refuse_direct.store(true); }
ScopedRefuseDirect::~ScopedRefuseDirect() { g_refuse_direct.store(false); }
bool ScopedRefuseDirect::active() { return g_refuse_direct.load(); }

}  // namespace shardload
