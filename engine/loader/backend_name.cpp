// BackendOf (backend_name.h): the Backend an IoBackend is.
// Thread-safe: pure functions.
#include "loader/backend_name.h"

#include <string_view>

namespace shardload {

Backend BackendOf(const IoBackend& backend) {
  return std::string_view(backend.name()) == BackendName(Backend::kIoUring) ? Backend::kIoUring
                                                                             : Backend::kPread;
}

}  // namespace shardload
