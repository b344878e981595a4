// HashFile: a file that goes through the page cache and is mostly in it is
// not read at all: HashMapped hashes it from a mapping of the cached pages
// (no copy; 1.14x the rate of the read() copies it replaced,
// docs/performance.md). Any other file: io_uring reads into a ring of `depth`
// aligned buffers, hashed strictly in file order as they complete; short
// reads are resumed, EINTR / EAGAIN retried. A read whose file offset is on
// the O_DIRECT grid goes to the O_DIRECT descriptor (the last one widened to
// the grid: the file may end inside it); one resumed at an odd offset after
// a short read goes to the buffered descriptor. kAuto takes the page cache
// for a file mostly in it and O_DIRECT for the rest.
// Thread-safe: each call owns its ring, buffers, mapping and descriptors.
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

#include "integrity/mapped_hash.h"
#include "integrity/sha256.h"
#include "io/file_table.h"
#include "io/residency.h"
#include "io/uring.h"
#include "util/errno_error.h"

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

// The file's descriptors: `direct` is -1 when reads are buffered only.
struct Source {
  const std::string& path;
  std::uint64_t size = 0;
  int buffered = -1;
  int direct = -1;
  std::uint64_t alignment = 1;  // O_DIRECT offset, length and memory grid
};

// One read: `length` bytes at `offset` of descriptor `fd`.
struct ReadCall {
  int fd;
  std::uint64_t length;
  bool direct;
};

// How to read `remaining` bytes at `offset`: O_DIRECT, widened to the grid,
// when the offset is on it; else buffered, exactly.
ReadCall PlanRead(const Source& src, std::uint64_t offset, std::uint64_t remaining) {
  const std::uint64_t a = src.alignment;
  if (src.direct >= 0 && offset % a == 0) {
    return {src.direct, (remaining + a - 1) / a * a, true};
  }
  return {src.buffered, remaining, false};
}

// One read in flight or done: chunk `index` of the file in buffer `slot`.
struct Slot {
  std::uint64_t offset = 0;  // file offset of the chunk
  std::uint64_t length = 0;  // chunk length
  std::uint64_t done = 0;    // bytes read so far
  bool busy = false;         // holds a chunk not yet hashed
  bool direct = false;       // some of it came by O_DIRECT
};

// Reads [0, size) of the source through one ring and hashes it in order.
class UringHasher {
 public:
  UringHasher(const Source& src, const HashOptions& options)
      : src_(src), read_size_(options.read_size), slots_(std::max(1u, options.depth)) {
    storage_ = AllocateBuffer(read_size_ * slots_.size());
  }

  int Init() { return ring_.Init(static_cast<unsigned>(slots_.size())); }

  Status Run(Sha256& sha, std::uint64_t& bytes_direct) {
    std::uint64_t next_offset = 0;  // of the next chunk to submit
    std::size_t next_hash = 0;      // slot of the next chunk to hash
    std::size_t next_slot = 0;      // slot for the next chunk to submit
    std::uint64_t hashed = 0;
    while (hashed < src_.size) {
      while (next_offset < src_.size && !slots_[next_slot].busy) {
        std::uint64_t length = std::min(read_size_, src_.size - next_offset);
        slots_[next_slot] = Slot{next_offset, length, 0, true};
        Submit(next_slot);
        next_offset += length;
        next_slot = (next_slot + 1) % slots_.size();
      }
      Slot& head = slots_[next_hash];
      if (head.done < head.length) {
        if (Status s = WaitOne(bytes_direct); !s) return Drain(std::move(s));
        continue;
      }
      if (head.direct) {
        sha.UpdateFromMemory({Data(next_hash), head.length});
      } else {
        sha.Update({Data(next_hash), head.length});
      }
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
    ReadCall call = PlanRead(src_, s.offset + s.done, s.length - s.done);
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());  // never null: one sqe per slot
    io_uring_prep_read(sqe, call.fd, Data(slot) + s.done, static_cast<unsigned>(call.length),
                       s.offset + s.done);
    io_uring_sqe_set_data64(sqe, slot | (call.direct ? kDirectBit : 0));
    io_uring_submit(ring_.get());
    ++in_flight_;
  }

  // Waits for one completion and applies it (resubmitting what is left).
  Status WaitOne(std::uint64_t& bytes_direct) {
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) return {};
    if (ret < 0) return ErrnoError(src_.path, "io_uring_wait_cqe", -ret);
    const std::uint64_t data = io_uring_cqe_get_data64(cqe);
    const std::size_t slot = static_cast<std::size_t>(data & ~kDirectBit);
    int res = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    --in_flight_;
    Slot& s = slots_[slot];
    if (res == -EINTR || res == -EAGAIN) {
      Submit(slot);
      return {};
    }
    if (res < 0) {
      return ErrnoError(src_.path, "read at offset " + std::to_string(s.offset + s.done), -res);
    }
    if (res == 0) return Truncated(src_.path, s.offset + s.done, src_.size);
    // A widened O_DIRECT read may return bytes past the chunk (the file grew).
    const std::uint64_t got = std::min<std::uint64_t>(static_cast<std::uint64_t>(res),
                                                      s.length - s.done);
    if ((data & kDirectBit) != 0) {
      bytes_direct += got;
      s.direct = true;
    }
    s.done += got;
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

  static constexpr std::uint64_t kDirectBit = 1ULL << 63;  // in user_data

  const Source& src_;
  std::uint64_t read_size_;
  std::vector<Slot> slots_;
  Buffer storage_;
  Ring ring_;
  unsigned in_flight_ = 0;
};

// The fallback: one read at a time into one buffer.
Status PreadHash(const Source& src, std::uint64_t read_size, Sha256& sha,
                 std::uint64_t& bytes_direct) {
  Buffer buffer = AllocateBuffer(read_size);
  std::uint64_t offset = 0;
  while (offset < src.size) {
    ReadCall call = PlanRead(src, offset, std::min(read_size, src.size - offset));
    ssize_t n = ::pread(call.fd, buffer.get(), call.length, static_cast<off_t>(offset));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError(src.path, "pread at offset " + std::to_string(offset), errno);
    if (n == 0) return Truncated(src.path, offset, src.size);
    const std::uint64_t got =
        std::min<std::uint64_t>(static_cast<std::uint64_t>(n), src.size - offset);
    if (call.direct) {
      bytes_direct += got;
      sha.UpdateFromMemory({buffer.get(), static_cast<std::size_t>(got)});
    } else {
      sha.Update({buffer.get(), static_cast<std::size_t>(got)});
    }
    offset += got;
  }
  return {};
}

// True when at least half of the file's pages are in the page cache
// (sampled: ResidencyProbe::Sample); a failed probe counts as not.
bool MostlyCached(int fd, const std::string& path, std::uint64_t size) {
  if (size == 0) return true;
  ResidencyProbe probe;
  auto count = probe.Sample(fd, path, 0, size);
  return count && count->pages > 0 && 2 * count->cached >= count->pages;
}

// Opens the buffered descriptor and, unless MODE is kBuffered (or kAuto and
// the file mostly cached), the O_DIRECT one (kAuto: only where the file
// system takes it). kAuto sets *mostly_cached to its residency probe's answer.
Result<FileTable> OpenSource(const std::string& path, const HashOptions& options,
                             std::optional<bool>* mostly_cached) {
  const IoMode mode = options.mode;
  auto files = FileTable::OpenOne(path, options.shard,
                                  mode == IoMode::kBuffered ? mode : IoMode::kAuto);
  if (!files || mode == IoMode::kBuffered) return files;
  if (mode == IoMode::kAuto) {
    struct stat st{};
    if (::fstat(files->fd(0, false), &st) != 0) return ErrnoError(path, "fstat", errno);
    *mostly_cached = MostlyCached(files->fd(0, false), path, static_cast<std::uint64_t>(st.st_size));
    if (**mostly_cached) return files;
  }
  if (files->alignment() > kPage) {  // a grid our page-aligned buffers do not meet
    if (mode == IoMode::kAuto) return files;
    return MakeError(ErrorCode::kUnsupported, path, "",
                     "O_DIRECT alignment " + std::to_string(files->alignment()) +
                         " exceeds the page size");
  }
  Status direct = files->OpenDirect(0);
  if (!direct && (mode == IoMode::kDirect || direct.error().code != ErrorCode::kUnsupported)) {
    return std::move(direct).error();
  }
  return files;
}

// Whether a file read through the page cache is hashed from a mapping:
// kAuto when at least half of it is cached (`probed`: OpenSource's answer).
bool FromMapping(const Source& src, CachedRead cached, std::optional<bool> probed) {
  if (cached != CachedRead::kAuto) return cached == CachedRead::kMapped;
  return probed ? *probed : MostlyCached(src.buffered, src.path, src.size);
}

// Reads the file (io_uring, else a pread loop) and hashes it in order.
Status HashByReads(const Source& src, const HashOptions& options, Sha256& sha, FileHash& out) {
  if (src.direct < 0) (void)::posix_fadvise(src.buffered, 0, 0, POSIX_FADV_SEQUENTIAL);
  HashOptions o = options;
  if (src.direct < 0) o.depth = options.buffered_depth;
  o.read_size = std::max<std::uint64_t>(kPage, (o.read_size + kPage - 1) / kPage * kPage);
  o.read_size = std::min<std::uint64_t>(o.read_size, 1ULL << 30);
  UringHasher uring(src, o);
  if (uring.Init() == 0) {
    out.used_uring = true;
    return uring.Run(sha, out.bytes_direct);
  }
  return PreadHash(src, o.read_size, sha, out.bytes_direct);
}

}  // namespace

Result<FileHash> HashFile(const std::string& path, const HashOptions& options) {
  try {
    std::optional<bool> mostly_cached;
    auto files = OpenSource(path, options, &mostly_cached);
    if (!files) return std::move(files).error();
    Source src{path};
    src.buffered = files->fd(0, false);
    src.direct = files->fd(0, true);
    src.alignment = std::max<std::uint64_t>(1, files->alignment());
    struct stat st{};
    if (::fstat(src.buffered, &st) != 0) return ErrnoError(path, "fstat", errno);
    src.size = static_cast<std::uint64_t>(st.st_size);
    if (options.expected_size && src.size != *options.expected_size) {
      return MakeError(ErrorCode::kTruncated, path, "",
                       "the file has " + std::to_string(src.size) + " bytes; its header says " +
                           std::to_string(*options.expected_size));
    }
    Sha256 sha;
    FileHash out;
    out.bytes = src.size;
    out.mapped = src.direct < 0 && FromMapping(src, options.cached, mostly_cached);
    Status s = out.mapped ? HashMapped(path, src.buffered, src.size, options.map_window, sha,
                                       options.before_window)
                          : HashByReads(src, options, sha, out);
    if (!s) return std::move(s).error();
    out.sha256 = sha.FinalHex();
    return out;
  } catch (const std::bad_alloc&) {
    return MakeError(ErrorCode::kResourceExhausted, path, "", "out of memory");
  }
}

}  // namespace shardload
