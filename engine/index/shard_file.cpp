// ShardFile: a shard's kept descriptor and recorded identity; the checks
// that a descriptor (or the file now) is still that file, and reopening the
// same inode through /proc/self/fd.
// Thread-safe: const members over immutable state, plus system calls.
#include "index/shard_file.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>

#include <fmt/format.h>

#include "util/errno_error.h"

namespace shardload::internal {
namespace {

std::string Mtime(std::int64_t ns) {
  return fmt::format("{}.{:09}", ns / 1000000000, ns % 1000000000);
}

// What differs between the recorded file and NOW, or nothing. CHECK_INODE:
// NOW may be another file (a descriptor opened by path).
Status Compare(const std::string& path, const FileIdentity& was, const FileIdentity& now,
               bool check_inode) {
  if (check_inode && (now.device != was.device || now.inode != was.inode)) {
    return MakeError(ErrorCode::kShardChanged, path, "",
                     fmt::format("the path now names another file ({}) than the one the "
                                 "checkpoint was opened from ({}): it was replaced since; "
                                 "open the checkpoint again",
                                 now.ToString(), was.ToString()));
  }
  if (now.size < was.size) {
    Error e = MakeError(ErrorCode::kTruncated, path, "",
                        fmt::format("the shard has {} bytes now, {} when the checkpoint was "
                                    "opened: it was cut since",
                                    now.size, was.size));
    e.offset = now.size;
    return e;
  }
  if (now.size != was.size || now.mtime_ns != was.mtime_ns) {
    return MakeError(ErrorCode::kShardChanged, path, "",
                     fmt::format("the shard was modified in place since the checkpoint was "
                                 "opened ({} bytes, modified {}; then {} bytes, modified {}); "
                                 "open the checkpoint again",
                                 now.size, Mtime(now.mtime_ns), was.size, Mtime(was.mtime_ns)));
  }
  return {};
}

}  // namespace

std::string FileIdentity::ToString() const {
  return fmt::format("device {}:{}, inode {}, {} bytes, modified {}", major(device),
                     minor(device), inode, size, Mtime(mtime_ns));
}

FileIdentity IdentityOf(const struct stat& st) {
  FileIdentity id;
  id.device = st.st_dev;
  id.inode = st.st_ino;
  id.size = static_cast<std::uint64_t>(st.st_size);
  id.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

Status ShardFile::CheckUnchanged() const {
  struct stat st {};
  if (kept() ? ::fstat(fd(), &st) != 0 : ::stat(path_.c_str(), &st) != 0) {
    return ErrnoError(path_, kept() ? "fstat" : "stat", errno);
  }
  return Compare(path_, identity_, IdentityOf(st), !kept());
}

Status ShardFile::CheckSame(int fd) const {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError(path_, "fstat", errno);
  return Compare(path_, identity_, IdentityOf(st), /*check_inode=*/true);
}

int ShardFile::OpenAgain(int flags) const {
  flags |= O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  if (kept()) {
    char self[40];
    std::snprintf(self, sizeof self, "/proc/self/fd/%d", fd());
    int fd = ::open(self, flags);
    if (fd >= 0 || errno != ENOENT) return fd;  // ENOENT: no /proc here
  }
  return ::open(path_.c_str(), flags);
}

bool WithinKeepBudget(int fd) {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur == RLIM_INFINITY) return true;
  return static_cast<rlim_t>(fd) < limit.rlim_cur / 2;
}

}  // namespace shardload::internal
