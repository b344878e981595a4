// HashFile: io_uring reads into a ring of `depth` buffers, hashed strictly in
// file order as they complete; short reads are resumed, EINTR/EAGAIN retried.
// Thread-safe: each call owns its ring, buffers and descriptor.
#include "integrity/file_hasher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <new>
#include <span>
#include <vector>

#include "integrity/sha256.h"
#include "io/uring.h"
#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload {
namespace {

constexpr std::uint64_t kPage = 4096;

struct AlignedFree {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{kPage}); }
};
using Buffer = std::unique_ptr<std::byte[], AlignedFree>;

Buffer AllocateBuffer(std::uint64_t size) {
  return Buffer(static_cast<std::byte*>(::operator new[](size, std::align_val_t{kPage})));
}

Error Truncated(const std::string& path, std::uint64_t at, std::uint64_t size) {
  return MakeError(ErrorCode::kTruncated, path, "",
                   "the file ended at byte " + std::to_string(at) + "; expected " +
                       std::to_string(size) + " bytes");
}

// One read in flight or done: chunk `index` of the file in buffer `slot`.
struct Slot {
  std::uint64_t offset = 0;  // file offset of the chunk
  std::uint64_t length = 0;  // chunk length
  std::uint64_t done = 0;    // bytes read so far
  bool busy = false;         // holds a chunk not yet hashed
};

// Reads [0, size) of `fd` through one ring and hashes it in order.
class UringHasher {
 public:
  UringHasher(int fd, const std::string& path, std::uint64_t size, const HashOptions& options)
      : fd_(fd), path_(path), size_(size), read_size_(options.read_size),
        slots_(std::max(1u, options.depth)) {
    storage_ = AllocateBuffer(read_size_ * slots_.size());
  }

  int Init() { return ring_.Init(static_cast<unsigned>(slots_.size())); }

  Status Run(Sha256& sha) {
    std::uint64_t next_offset = 0;  // of the next chunk to submit
    std::size_t next_hash = 0;      // slot of the next chunk to hash
    std::size_t next_slot = 0;      // slot for the next chunk to submit
    std::uint64_t hashed = 0;
    while (hashed < size_) {
      while (next_offset < size_ && !slots_[next_slot].busy) {
        std::uint64_t length = std::min(read_size_, size_ - next_offset);
        slots_[next_slot] = Slot{next_offset, length, 0, true};
        Submit(next_slot);
        next_offset += length;
        next_slot = (next_slot + 1) % slots_.size();
      }
      Slot& head = slots_[next_hash];
      if (head.done < head.length) {
        if (Status s = WaitOne(); !s) return Drain(std::move(s));
        continue;
      }
      sha.Update({Data(next_hash), head.length});
      hashed += head.length;
      head.busy = false;
      next_hash = (next_hash + 1) % slots_.size();
    }
    return {};
  }

 private:
  std::byte* Data(std::size_t slot) { return storage_.get() + slot * read_size_; }

  void Submit(std::size_t slot) {
    Slot& s = slots_[slot];
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());  // never null: one sqe per slot
    io_uring_prep_read(sqe, fd_, Data(slot) + s.done, static_cast<unsigned>(s.length - s.done),
                       s.offset + s.done);
    io_uring_sqe_set_data64(sqe, slot);
    io_uring_submit(ring_.get());
    ++in_flight_;
  }

  // Waits for one completion and applies it (resubmitting what is left).
  Status WaitOne() {
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) return {};
    if (ret < 0) return ErrnoError(path_, "io_uring_wait_cqe", -ret);
    std::size_t slot = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
    int res = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    --in_flight_;
    Slot& s = slots_[slot];
    if (res == -EINTR || res == -EAGAIN) {
      Submit(slot);
      return {};
    }
    if (res < 0) return ErrnoError(path_, "read at offset " + std::to_string(s.offset + s.done), -res);
    if (res == 0) return Truncated(path_, s.offset + s.done, size_);
    s.done += static_cast<std::uint64_t>(res);
    if (s.done < s.length) Submit(slot);
    return {};
  }

  // After an error: waits for the reads still in flight (they write into
  // our buffers), then returns the error.
  Status Drain(Status error) {
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      int ret = io_uring_wait_cqe(ring_.get(), &cqe);
      if (ret == -EINTR) continue;
      if (ret < 0) break;
      io_uring_cqe_seen(ring_.get(), cqe);
      --in_flight_;
    }
    return error;
  }

  int fd_;
  const std::string& path_;
  std::uint64_t size_;
  std::uint64_t read_size_;
  std::vector<Slot> slots_;
  Buffer storage_;
  Ring ring_;
  unsigned in_flight_ = 0;
};

// The fallback: one pread at a time into one buffer.
Status PreadHash(int fd, const std::string& path, std::uint64_t size, std::uint64_t read_size,
                 Sha256& sha) {
  Buffer buffer = AllocateBuffer(read_size);
  std::uint64_t offset = 0;
  while (offset < size) {
    std::uint64_t want = std::min(read_size, size - offset);
    ssize_t n = ::pread(fd, buffer.get(), want, static_cast<off_t>(offset));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError(path, "pread at offset " + std::to_string(offset), errno);
    if (n == 0) return Truncated(path, offset, size);
    sha.Update({buffer.get(), static_cast<std::size_t>(n)});
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

}  // namespace

Result<FileHash> HashFile(const std::string& path, const HashOptions& options) {
  try {
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoError(path, "open", errno);
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "fstat", errno);
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (options.expected_size && size != *options.expected_size) {
      return MakeError(ErrorCode::kTruncated, path, "",
                       "the file has " + std::to_string(size) + " bytes; its header says " +
                           std::to_string(*options.expected_size));
    }
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    HashOptions o = options;
    o.read_size = std::max<std::uint64_t>(kPage, (o.read_size + kPage - 1) / kPage * kPage);
    o.read_size = std::min<std::uint64_t>(o.read_size, 1ULL << 30);
    Sha256 sha;
    FileHash out;
    UringHasher uring(fd.get(), path, size, o);
    if (uring.Init() == 0) {
      out.used_uring = true;
      if (Status s = uring.Run(sha); !s) return std::move(s).error();
    } else if (Status s = PreadHash(fd.get(), path, size, o.read_size, sha); !s) {
      return std::move(s).error();
    }
    out.sha256 = sha.FinalHex();
    out.bytes = size;
    return out;
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, path, "", "out of memory");
  }
}

}  // namespace shardload
