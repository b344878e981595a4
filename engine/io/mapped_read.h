// Executes mapped ReadOps (ReadOp::mapped, ReadStrategy::kMapped).
//
// ShardMappings maps, once per load, the part of each shard that mapped ops
// read (read-only, MAP_SHARED: page-cache pages, no memory of its own). A
// mapped op then asks the kernel to map its window's pages at once
// (MADV_POPULATE_READ: pages in the page cache get page-table entries,
// evicted ones are read back in), copies the runs out as a staged read copies
// out of its staging buffer (io/copy_out.h), and drops the window's
// page-table entries again (MADV_DONTNEED; the file's pages stay cached). No
// read system call per run, and no mmap/munmap per op: workers only take the
// mmap lock for reading, so they do not serialize on each other's mappings.
//
// Failures: a file truncated before or during the copy (SIGBUS on the
// mapping, recovered by io/sigbus_guard.h) is kTruncated naming the file and
// offset; a page that cannot be read in is kIoError (EIO); mmap failing is
// kIoError with its errno.
//
// Thread-safety: ShardMappings is immutable once made (shared by the
// workers); MappedRead touches only the op's destinations and page-table
// entries of its own window (a page it shares with a neighbouring window is
// faulted back in if dropped under it: correct, just slower).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "io/io_backend.h"
#include "plan/read_op.h"
#include "shardload/error.h"

namespace shardload {

class ShardMappings {
 public:
  ShardMappings() = default;
  ShardMappings(ShardMappings&& other) noexcept;
  ShardMappings& operator=(ShardMappings&& other) noexcept;
  ~ShardMappings();

  // Maps bytes [0, end) of each file of `files` that a mapped op of `ops`
  // reads, `end` the furthest byte such an op reads. No mapping when no op
  // is mapped.
  static Result<ShardMappings> Map(const FileTable& files, std::span<const ReadOp> ops);

  // Where byte 0 of `file` is mapped; null when nothing of it is.
  const std::byte* base(std::uint32_t file) const {
    return file < maps_.size() ? maps_[file].data : nullptr;
  }

 private:
  struct Mapping {
    std::byte* data = nullptr;
    std::uint64_t length = 0;
  };
  void Release() noexcept;
  std::vector<Mapping> maps_;  // by file index
};

// REQUIRES: op.mapped, ctx.mappings maps op.file. On success counts the op's
// bytes (op.length) in stats.bytes_read and delivers (DeliverOp's counting
// and progress); the caller counts the operation in stats.read_ops.
Status MappedRead(const ReadOp& op, const ExecContext& ctx, WorkerStats& stats);

}  // namespace shardload
