// LoadStats::backend from the engine's I/O backend, and the backend names.
// Thread-safe: pure functions.
#pragma once

#include "io/io_backend.h"
#include "shardload/stats.h"

namespace shardload {

// kIoUring or kPread: which engine backend `backend` is (IoBackend::name()).
Backend BackendOf(const IoBackend& backend);

}  // namespace shardload
