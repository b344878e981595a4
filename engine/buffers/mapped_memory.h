// Page-aligned anonymous memory (mmap), optionally on transparent huge pages,
// and parallel-friendly pre-faulting of destination ranges.
// MappedMemory is move-only and unmaps on destruction; thread-compatible (the
// bytes themselves may be written by many threads at disjoint places).
#pragma once

#include <cstddef>
#include <cstdint>

#include "shardload/error.h"

namespace shardload {

inline constexpr std::size_t kHugePageSize = 2ULL << 20;

class MappedMemory {
 public:
  MappedMemory() = default;
  // Maps `size` bytes of zeroed memory. With `huge_pages`, the mapping starts
  // on a 2 MiB boundary and is advised MADV_HUGEPAGE (THP in madvise mode).
  // Nothing is faulted in. size == 0 gives an empty object.
  static Result<MappedMemory> Map(std::size_t size, bool huge_pages);

  MappedMemory(MappedMemory&& other) noexcept;
  MappedMemory& operator=(MappedMemory&& other) noexcept;
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory();

  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  MappedMemory(std::byte* data, std::size_t size) : data_(data), size_(size) {}
  void Reset() noexcept;

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;  // the mapped length (a multiple of the page size)
};

// Faults in the pages under [data, data + size) for writing, without changing
// their contents (MADV_POPULATE_WRITE; where the kernel lacks it, one byte of
// each page inside the range is written, so only call this on bytes about to be
// overwritten). Best effort: failures are ignored (the read then faults).
void PrefaultForWrite(std::byte* data, std::size_t size);

}  // namespace shardload
