// HashMapped (see mapped_hash.h): one mapping of the whole file, windows
// populated, hashed under the SIGBUS guard and unpopulated in turn.
// Thread-safe: no state outside one call but the process-wide SIGBUS handler.
#include "integrity/mapped_hash.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "io/sigbus_guard.h"
#include "util/errno_error.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace shardload {
namespace {

// The file's mapping, unmapped on every way out.
struct Mapping {
  std::byte* data = nullptr;
  std::uint64_t length = 0;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(std::byte* d, std::uint64_t n) : data(d), length(n) {}
  ~Mapping() {
    if (data != nullptr) ::munmap(data, length);
  }
};

struct HashJob {
  Sha256* sha;
  const std::byte* bytes;
  std::uint64_t length;
};

void HashJobRun(void* arg) {
  auto* job = static_cast<HashJob*>(arg);
  job->sha->UpdateFromMemory({job->bytes, static_cast<std::size_t>(job->length)});
}

// The error for a SIGBUS at file offset `at`: the file now ends before
// `size` (kTruncated), or the page could not be read in (kIoError, EIO).
Error FaultError(const std::string& path, int fd, std::uint64_t size, std::uint64_t at) {
  struct stat st = {};
  Error e = ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < size
                ? MakeError(ErrorCode::kTruncated, path, "",
                            "the file ended at byte " + std::to_string(st.st_size) +
                                " while it was hashed; expected " + std::to_string(size) +
                                " bytes (no page at offset " + std::to_string(at) + ")")
                : ErrnoError(path, "hashing a mapping: the page at offset " + std::to_string(at) +
                                       " could not be read in (SIGBUS)", EIO);
  e.offset = at;
  return e;
}

}  // namespace

Status HashMapped(const std::string& path, int fd, std::uint64_t size, std::uint64_t window,
                  Sha256& sha, const std::function<void(std::uint64_t)>& before_hash) {
  if (size == 0) return {};
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ErrnoError(path, "mmap of " + std::to_string(size) + " bytes", errno);
  Mapping map(static_cast<std::byte*>(p), size);
  // Readahead for pages not cached, and no promotion of the ones hashed.
  (void)::madvise(map.data, size, MADV_SEQUENTIAL);
  InstallSigbusHandler();
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  window = std::max<std::uint64_t>(page, (window + page - 1) / page * page);
  for (std::uint64_t at = 0; at < size; at += window) {
    const std::uint64_t length = std::min(window, size - at);
    std::byte* bytes = map.data + at;
    // Failures (EFAULT past a new end of the file, EINVAL before Linux 5.14)
    // leave it to the hash's own faults.
    (void)::madvise(bytes, length, MADV_POPULATE_READ);
    if (before_hash) before_hash(at);
    HashJob job{&sha, bytes, length};
    std::uintptr_t fault = 0;
    const bool hashed = RunGuarded(&HashJobRun, &job, bytes, bytes + length, &fault);
    (void)::madvise(bytes, length, MADV_DONTNEED);
    if (!hashed) {
      return FaultError(path, fd, size, fault - reinterpret_cast<std::uintptr_t>(map.data));
    }
  }
  return {};
}

}  // namespace shardload
