// Mapped reads (see mapped_read.h).
// Thread-safe: no shared state beyond the SIGBUS handler (sigbus_guard.h).
#include "io/mapped_read.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "io/copy_out.h"
#include "io/file_table.h"
#include "io/sigbus_guard.h"
#include "util/errno_error.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace shardload {
namespace {

std::uint64_t PageSize() {
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

struct CopyJob {
  const ReadOp* op;
  const std::byte* bytes;  // file byte op->offset in the mapping
  std::span<const Segment> scatter;
};

void CopyJobRun(void* job) {
  auto* j = static_cast<CopyJob*>(job);
  CopyOut(*j->op, j->bytes, j->scatter);
}

// The error for a SIGBUS at file offset `at`: the file ended before the op's
// range (kTruncated), or the page could not be read (kIoError, EIO).
Error FaultError(const ReadOp& op, const std::string& path, int fd, std::uint64_t at) {
  const std::uint64_t end = op.offset + op.length;
  const std::string what = "mapped read of " + std::to_string(op.length) + " bytes at offset " +
                           std::to_string(op.offset);
  struct stat st = {};
  if (::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < end) {
    Error e = MakeError(ErrorCode::kTruncated, path, "",
                        "truncated: " + what + " needs the file to reach offset " +
                            std::to_string(end) + " (the file now has " +
                            std::to_string(st.st_size) + " bytes; no page at offset " +
                            std::to_string(at) + ")");
    e.offset = at;
    return e;
  }
  Error e = ErrnoError(path, what + ": page at offset " + std::to_string(at) +
                                 " could not be read in (SIGBUS)", EIO);
  e.offset = at;
  return e;
}

}  // namespace

Status MappedRead(const ReadOp& op, const ExecContext& ctx, WorkerStats& stats) {
  const int fd = ctx.files->fd(op.file, /*direct=*/false);
  const std::string& path = ctx.files->path(op.file);
  const std::uint64_t lo = op.offset & ~(PageSize() - 1);
  const std::uint64_t length = op.offset + op.length - lo;
  void* map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(lo));
  if (map == MAP_FAILED) {
    return ErrnoError(path, "mmap of " + std::to_string(length) + " bytes at offset " +
                                std::to_string(lo),
                      errno);
  }
  auto* base = static_cast<std::byte*>(map);
  // One system call maps every page; failures (EFAULT past the end of the
  // file, EINVAL before Linux 5.14) leave it to the copy's own faults.
  (void)::madvise(map, length, MADV_POPULATE_READ);
  CopyJob job{&op, base + (op.offset - lo), ctx.scatter};
  std::uintptr_t fault = 0;
  InstallSigbusHandler();
  const bool copied = RunGuarded(&CopyJobRun, &job, base, base + length, &fault);
  ::munmap(map, length);
  if (!copied) {
    stats.failed_offset = lo + (fault - reinterpret_cast<std::uintptr_t>(base));
    return FaultError(op, path, fd, stats.failed_offset);
  }
  stats.bytes_read += op.length;
  stats.bytes_delivered += op.delivered;
  if (ctx.progress != nullptr) ctx.progress->Add(op.delivered);
  return {};
}

}  // namespace shardload
