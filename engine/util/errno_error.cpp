// Turns errno values into Errors with the file and the failing call.
#include "util/errno_error.h"

#include <cerrno>
#include <cstring>

namespace shardload {

Error ErrnoError(const std::string& path, const std::string& context, int err,
                 std::string tensor) {
  ErrorCode code = err == ENOMEM ? ErrorCode::kResourceExhausted : ErrorCode::kIoError;
  Error e = MakeError(code, path, std::move(tensor),
                      context + ": " + std::strerror(err));
  e.sys_errno = err;
  return e;
}

}  // namespace shardload
