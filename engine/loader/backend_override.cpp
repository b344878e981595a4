// The per-thread backend override of backend_override.h.
// Thread-safe: thread_local state only.
#include "loader/backend_override.h"

namespace shardload {
namespace {

thread_local const IoBackend* g_override = nullptr;

}  // namespace

ScopedBackendOverride::ScopedBackendOverride(const IoBackend& backend) : previous_(g_override) {
  g_override = &backend;
}

ScopedBackendOverride::~ScopedBackendOverride() { g_override = previous_; }

const IoBackend* ScopedBackendOverride::Current() { return g_override; }

}  // namespace shardload
