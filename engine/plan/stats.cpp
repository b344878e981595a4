// BackendName and IoModeName (include/shardload/stats.h).
// Thread-safe: pure functions.
#include "shardload/stats.h"

namespace shardload {

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kIoUring: return "io_uring";
    case Backend::kPread: return "pread";
  }
  return "unknown";
}

const char* IoModeName(IoMode mode) {
  switch (mode) {
    case IoMode::kAuto:
      return "auto";
    case IoMode::kBuffered:
      return "buffered";
    case IoMode::kDirect:
      return "direct";
  }
  return "auto";
}

}  // namespace shardload
