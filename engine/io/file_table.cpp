// FileTable: opens shards (regular files only), buffered and/or O_DIRECT,
// a checkpoint's through the descriptors it kept; finds their O_DIRECT
// alignment.
// Thread-compatible while descriptors are opened, thread-safe after; the
// ScopedRefuseDirect flag is an atomic.
#include "io/file_table.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "index/checkpoint_access.h"
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
// SHARD (when not null): the same inode as the file its checkpoint kept
// (reopened through /proc/self/fd), unchanged since, or an error.
Result<FileDescriptor> OpenShard(const std::string& path, const internal::ShardFile* shard,
                                 bool direct) {
  if (direct && g_refuse_direct.load(std::memory_order_relaxed)) return DirectRefused(path);
  const int extra = direct ? O_DIRECT : 0;
  FileDescriptor fd(shard ? shard->OpenAgain(extra)
                          : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | extra));
  if (!fd.valid()) {
    int err = errno;
    if (direct && err == EINVAL) return DirectRefused(path);
    return ErrnoError(path, "open", err);
  }
  if (Status s = CheckOpened(path, fd.get()); !s) return std::move(s).error();
  if (shard) {
    if (Status s = shard->CheckSame(fd.get()); !s) return std::move(s).error();
  }
  return fd;
}

// An error about a shard of CHECKPOINT that names no tensor names the
// shard's first tensor in the file.
Error NameFirstTensor(const Checkpoint& checkpoint, Error e) {
  if (!e.tensor.empty()) return e;
  const TensorInfo* first = nullptr;
  for (const TensorInfo& t : checkpoint.tensors()) {
    if (checkpoint.shards()[t.shard].path != e.path) continue;
    if (first == nullptr || t.offset < first->offset) first = &t;
  }
  if (first != nullptr) e.tensor = first->name;
  return e;
}

}  // namespace

Result<FileTable> FileTable::Open(std::span<const std::string> paths,
                                  std::span<const bool> needed, IoMode mode) {
  FileTable table;
  table.files_.resize(paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) table.files_[i].path = paths[i];
  if (Status s = table.OpenNeeded(needed, mode); !s) return std::move(s).error();
  return table;
}

Result<FileTable> FileTable::Open(const Checkpoint& checkpoint, std::span<const bool> needed,
                                  IoMode mode) {
  FileTable table;
  const std::vector<ShardInfo>& shards = checkpoint.shards();
  table.files_.resize(shards.size());
  for (std::uint32_t i = 0; i < shards.size(); ++i) {
    table.files_[i].path = shards[i].path;
    table.files_[i].shard = internal::CheckpointAccess::SharedFile(checkpoint, i);
  }
  if (Status s = table.OpenNeeded(needed, mode); !s) {
    return NameFirstTensor(checkpoint, std::move(s).error());
  }
  return table;
}

Result<FileTable> FileTable::OpenOne(const std::string& path,
                                     std::shared_ptr<const internal::ShardFile> shard,
                                     IoMode mode) {
  FileTable table;
  table.files_.resize(1);
  table.files_[0].path = path;
  table.files_[0].shard = std::move(shard);
  const bool needed[] = {true};
  if (Status s = table.OpenNeeded(needed, mode); !s) return std::move(s).error();
  return table;
}

Status FileTable::OpenNeeded(std::span<const bool> needed, IoMode mode) {
  const bool direct = mode == IoMode::kDirect;
  for (std::size_t i = 0; i < files_.size(); ++i) {
    File& f = files_[i];
    if (!needed[i]) continue;
    if (direct) {
      auto fd = OpenShard(f.path, f.shard.get(), /*direct=*/true);
      if (!fd) return std::move(fd).error();
      f.direct = std::move(*fd);
    } else if (Status s = OpenBuffered(f); !s) {
      return s;
    }
    if (mode != IoMode::kBuffered) {
      std::uint64_t a = DirectAlignment(direct ? f.direct.get() : f.buffered);
      if (!IsPowerOfTwo(a)) a = kDefaultDirectAlignment;
      alignment_ = std::max(alignment_, a);
    }
  }
  return {};
}

// A kept descriptor is used as it is, once the file is checked unchanged.
Status FileTable::OpenBuffered(File& f) {
  if (f.shard && f.shard->kept()) {
    if (Status s = f.shard->CheckUnchanged(); !s) return s;
    f.buffered = f.shard->fd();
    return {};
  }
  auto fd = OpenShard(f.path, f.shard.get(), /*direct=*/false);
  if (!fd) return std::move(fd).error();
  f.own = std::move(*fd);
  f.buffered = f.own.get();
  return {};
}

Status FileTable::OpenDirect(std::uint32_t file) {
  File& f = files_[file];
  if (f.direct.valid()) return {};
  auto fd = OpenShard(f.path, f.shard.get(), /*direct=*/true);
  if (!fd) return std::move(fd).error();
  f.direct = std::move(*fd);
  return {};
}

std::vector<int> FileTable::Descriptors() const {
  std::vector<int> fds;
  fds.reserve(2 * files_.size());
  for (const File& f : files_) fds.push_back(f.buffered);
  for (const File& f : files_) fds.push_back(f.direct.get());
  return fds;
}

ScopedRefuseDirect::ScopedRefuseDirect() { g_refuse_direct.store(true); }
ScopedRefuseDirect::~ScopedRefuseDirect() { g_refuse_direct.store(false); }
bool ScopedRefuseDirect::active() { return g_refuse_direct.load(); }

}  // namespace shardload
