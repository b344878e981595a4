// Test seam: an IoBackend that the loads started on this thread run instead
// of the one the Loader chose, e.g. tests/io/faulty_backend.h, which wraps a
// real backend to inject faults. Internal (not in include/); production code
// never sets it, and a load only reads it once, on the calling thread.
// Thread-safe: the override is per thread.
#pragma once

#include "io/io_backend.h"

namespace shardload {

class ScopedBackendOverride {
 public:
  // REQUIRES: `backend` outlives this object. The previous override of this
  // thread comes back on destruction.
  explicit ScopedBackendOverride(const IoBackend& backend);
  ~ScopedBackendOverride();
  ScopedBackendOverride(const ScopedBackendOverride&) = delete;
  ScopedBackendOverride& operator=(const ScopedBackendOverride&) = delete;

  // The calling thread's override, or null.
  static const IoBackend* Current();

 private:
  const IoBackend* previous_;
};

}  // namespace shardload
