// BackendName (loader.h) and BackendOf (backend_name.h).
// Thread-safe: pure functions.
#include "loader/backend_name.h"

#include <string_view>

namespace shardload {

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kIoUring: return "io_uring";
    case Backend::kPread: return "pread";
  }
  return "unknown";
}

Backend BackendOf(const IoBackend& backend) {
  return std::string_view(backend.name()) == BackendName(Backend::kIoUring) ? Backend::kIoUring
                                                                             : Backend::kPread;
}

}  // namespace shardload
