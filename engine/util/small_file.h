// ReadSmallFile: the whole of a small file (an index, a tensor-parallel
// plan, a config.json), opened so that a FIFO or device cannot hang the
// caller.
// Thread-safe: a function over the file system.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "shardload/error.h"

namespace shardload {

// O_NONBLOCK, then fstat must say regular file (kNotRegularFile naming WHAT
// otherwise), and at most MAX_SIZE bytes (TOO_LARGE otherwise). A file that
// shrinks while read yields what is there. Errors name PATH.
Result<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                  std::uint64_t max_size, ErrorCode too_large);

}  // namespace shardload
