// MappedMemory: mmap/munmap RAII with optional THP, and PrefaultForWrite.
// Thread-compatible.
#include "buffers/mapped_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "util/errno_error.h"

namespace shardload {
namespace {

std::size_t PageSize() {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

std::size_t RoundUp(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

}  // namespace

Result<MappedMemory> MappedMemory::Map(std::size_t size, bool huge_pages) {
  if (size == 0) return MappedMemory();
  const std::size_t align = huge_pages ? kHugePageSize : PageSize();
  const std::size_t length = RoundUp(size, PageSize());
  if (length < size || length > (std::size_t{1} << 46)) {
    return MakeError(ErrorCode::kResourceExhausted, "", "",
                     "cannot map " + std::to_string(size) + " bytes");
  }
  // Over-map by `align` and trim, so that the kept part starts aligned.
  const std::size_t padded = length + (huge_pages ? align : 0);
  void* p = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return ErrnoError("", "mmap of " + std::to_string(padded) + " bytes", errno);
  }
  auto raw = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t start = RoundUp(raw, align);
  std::size_t head = start - raw;
  std::size_t tail = padded - head - length;
  if (head > 0) ::munmap(p, head);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(start + length), tail);
  auto* data = reinterpret_cast<std::byte*>(start);
  // A refusal only costs speed (4 KiB pages), so it is not an error.
  if (huge_pages) (void)::madvise(data, length, MADV_HUGEPAGE);
  return MappedMemory(data, length);
}

MappedMemory::MappedMemory(MappedMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedMemory& MappedMemory::operator=(MappedMemory&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedMemory::~MappedMemory() { Reset(); }

void MappedMemory::Reset() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

void PrefaultForWrite(std::byte* data, std::size_t size) {
  if (size == 0) return;
  const std::size_t page = PageSize();
  auto begin = reinterpret_cast<std::uintptr_t>(data);
  std::uintptr_t aligned = begin & ~(page - 1);
  if (::madvise(reinterpret_cast<void*>(aligned), begin + size - aligned,
                MADV_POPULATE_WRITE) == 0) {
    return;
  }
  if (errno != EINVAL) return;  // e.g. EFAULT on an odd mapping: let the read fault
  // Kernel before 5.14: touch each page inside the range.
  for (std::uintptr_t p = begin; p < begin + size; p = (p & ~(page - 1)) + page) {
    *reinterpret_cast<volatile std::byte*>(p) = std::byte{0};
  }
}

}  // namespace shardload
