// HashMapped: the SHA-256 of a file's first `size` bytes straight from a
// read-only MAP_SHARED mapping of it (the page cache's own pages: no read
// system calls, no kernel copy), for files that are in the page cache.
// Thread-safe: each call owns its mapping; the SIGBUS guard is per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "integrity/sha256.h"
#include "shardload/error.h"

namespace shardload {

// Maps bytes [0, size) of `fd` (the buffered descriptor of `path`) and hashes
// them into `sha` a window of `window` bytes (rounded up to pages) at a time:
// MADV_POPULATE_READ gives the window's pages their page-table entries in one
// system call (a page not cached is read in then; before Linux 5.14 the
// hash's own faults do it), Sha256::UpdateFromMemory hashes it under the
// SIGBUS guard (io/sigbus_guard.h), MADV_DONTNEED drops the entries again
// (the pages stay cached), so page tables stay bounded by one window.
// Errors: kTruncated when the file shrank below `size` while it was hashed
// (the SIGBUS of a page past its end), kIoError with EIO when a page could
// not be read in, kIoError with mmap's errno. On error `sha` is unusable.
// `before_hash` (a test seam; may be empty) is called with each window's file
// offset once the window is populated, just before it is hashed.
Status HashMapped(const std::string& path, int fd, std::uint64_t size, std::uint64_t window,
                  Sha256& sha, const std::function<void(std::uint64_t)>& before_hash = {});

}  // namespace shardload
