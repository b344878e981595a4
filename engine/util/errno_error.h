// The one way a system call failure becomes an Error.
// Thread-safe.
#pragma once

#include <string>

#include "shardload/error.h"

namespace shardload {

// kIoError (or kResourceExhausted for ENOMEM) naming `path`, what was being
// done (`context`, e.g. "open") and strerror(err).
Error ErrnoError(const std::string& path, const std::string& context, int err,
                 std::string tensor = {});

}  // namespace shardload
