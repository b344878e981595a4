// Mapped reads (see mapped_read.h).
// Thread-safe: no shared state beyond the SIGBUS handler (sigbus_guard.h)
// and the read-only ShardMappings.
#include "io/mapped_read.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

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

ShardMappings::ShardMappings(ShardMappings&& other) noexcept
    : maps_(std::exchange(other.maps_, {})) {}

ShardMappings& ShardMappings::operator=(ShardMappings&& other) noexcept {
  if (this != &other) {
    Release();
    maps_ = std::exchange(other.maps_, {});
  }
  return *this;
}

ShardMappings::~ShardMappings() { Release(); }

void ShardMappings::Release() noexcept {
  for (const Mapping& m : maps_) {
    if (m.data != nullptr) ::munmap(m.data, m.length);
  }
  maps_.clear();
}

Result<ShardMappings> ShardMappings::Map(const FileTable& files, std::span<const ReadOp> ops) {
  std::vector<std::uint64_t> end(files.size(), 0);
  for (const ReadOp& op : ops) {
    if (op.mapped) end[op.file] = std::max(end[op.file], op.offset + op.length);
  }
  ShardMappings out;
  out.maps_.resize(files.size());
  for (std::uint32_t f = 0; f < files.size(); ++f) {
    if (end[f] == 0) continue;
    void* p = ::mmap(nullptr, end[f], PROT_READ, MAP_SHARED, files.fd(f, /*direct=*/false), 0);
    if (p == MAP_FAILED) {
      return ErrnoError(files.path(f), "mmap of " + std::to_string(end[f]) + " bytes", errno);
    }
    out.maps_[f] = {static_cast<std::byte*>(p), end[f]};
  }
  return out;
}

Status MappedRead(const ReadOp& op, const ExecContext& ctx, WorkerStats& stats) {
  const std::byte* base = ctx.mappings != nullptr ? ctx.mappings->base(op.file) : nullptr;
  const std::string& path = ctx.files->path(op.file);
  if (base == nullptr) {
    return MakeError(ErrorCode::kInternal, path, "", "mapped read of an unmapped file");
  }
  const std::uint64_t lo = op.offset & ~(PageSize() - 1);
  const std::uint64_t hi = op.offset + op.length;
  auto* window = const_cast<std::byte*>(base + lo);
  // One system call maps every page; failures (EFAULT past the end of the
  // file, EINVAL before Linux 5.14) leave it to the copy's own faults.
  (void)::madvise(window, hi - lo, MADV_POPULATE_READ);
  CopyJob job{&op, base + op.offset, ctx.scatter};
  std::uintptr_t fault = 0;
  InstallSigbusHandler();
  const bool copied = RunGuarded(&CopyJobRun, &job, window, base + hi, &fault);
  // Drop the page-table entries (page tables stay bounded by the window; the
  // pages stay in the page cache).
  (void)::madvise(window, hi - lo, MADV_DONTNEED);
  if (!copied) {
    stats.failed_offset = fault - reinterpret_cast<std::uintptr_t>(base);
    return FaultError(op, path, ctx.files->fd(op.file, false), stats.failed_offset);
  }
  stats.bytes_read += op.length;
  stats.bytes_delivered += op.delivered;
  if (ctx.progress != nullptr) ctx.progress->Add(op.delivered);
  return {};
}

}  // namespace shardload
