// Executes a mapped ReadOp (ReadOp::mapped, ReadStrategy::kMapped): maps the
// op's file range read-only and shared, asks the kernel to map every page of
// it at once (MADV_POPULATE_READ: pages in the page cache get page-table
// entries, evicted ones are read back in), copies the runs out as a staged
// read copies out of its staging buffer (io/copy_out.h), and unmaps. No read
// system call per run; the cost is the page-table work of the whole range.
//
// Failures: a file truncated before or during the copy (SIGBUS on the
// mapping, recovered by io/sigbus_guard.h) is kTruncated naming the file and
// offset; a page that cannot be read in is kIoError (EIO); mmap failing is
// kIoError with its errno. Nothing of the mapping outlives the call.
//
// Thread-safe: touches only the op's destinations and its own mapping.
#pragma once

#include "io/io_backend.h"
#include "plan/read_op.h"
#include "shardload/error.h"

namespace shardload {

// REQUIRES: op.mapped. On success counts the op's bytes (op.length) in
// stats.bytes_read, delivers (DeliverOp's counting and progress); the caller
// counts the operation in stats.read_ops.
Status MappedRead(const ReadOp& op, const ExecContext& ctx, WorkerStats& stats);

}  // namespace shardload
