// The pread backend: each worker runs its ReadOps one after another with
// pread(2), under the same completion policy as io_uring (completion.h).
// Used when io_uring cannot be set up, when forced (Backend::kPread), and by
// an io_uring worker whose ring fails. A CompletionFilter (tests) sees each
// pread result; with one read at a time there is no completion order to change.
// Thread-safe: stateless; Execute runs concurrently on many workers.
#pragma once

#include "io/io_backend.h"

namespace shardload {

class PreadBackend final : public IoBackend {
 public:
  Status Execute(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats) const override;
  const char* name() const override { return "pread"; }
};

}  // namespace shardload
