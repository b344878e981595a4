// Residency probes (cachestat, mincore) and the auto mode's per-segment
// choice between buffered and O_DIRECT reads (see residency.h).
// Thread-compatible: a ResidencyProbe and MarkResidency's inputs belong to
// one thread; Best() caches its answer in an atomic.
#include "io/residency.h"

#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <utility>

#include "io/file_table.h"
#include "util/errno_error.h"

namespace shardload {
namespace {

// cachestat(2): the same number on every architecture (the generic table).
constexpr long kCachestatSyscall = 451;

struct CachestatRange {
  std::uint64_t off;
  std::uint64_t len;
};

struct CachestatResult {
  std::uint64_t nr_cache;
  std::uint64_t nr_dirty;
  std::uint64_t nr_writeback;
  std::uint64_t nr_evicted;
  std::uint64_t nr_recently_evicted;
};

// mincore window: 1 GiB of mapping, a 256 KiB vector (4 KiB pages).
constexpr std::uint64_t kMincoreWindow = 1ULL << 30;

std::uint64_t PageSize() {
  static const std::uint64_t size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::uint64_t AlignDown(std::uint64_t x, std::uint64_t a) { return x & ~(a - 1); }

long CallCachestat(int fd, std::uint64_t offset, std::uint64_t length, CachestatResult* out) {
  CachestatRange range{offset, length};
  return ::syscall(kCachestatSyscall, fd, &range, out, 0);
}

// f_type of the file systems whose inodes leave their pages to another
// (linux/magic.h).
constexpr long kOverlayfsMagic = 0x794c7630;
constexpr long kFuseMagic = 0x65735546;

// 0: unknown, 1: cachestat, 2: mincore.
std::atomic<int> g_best{0};

}  // namespace

const char* ResidencyMethodName(ResidencyMethod method) {
  return method == ResidencyMethod::kCachestat ? "cachestat" : "mincore";
}

ResidencyMethod ResidencyProbe::Best() {
  int best = g_best.load(std::memory_order_relaxed);
  if (best == 0) {
    // A call on a bad descriptor: ENOSYS when the kernel lacks cachestat,
    // EBADF when it has it.
    CachestatResult r{};
    long ret = CallCachestat(-1, 0, PageSize(), &r);
    best = ret != 0 && errno == ENOSYS ? 2 : 1;
    g_best.store(best, std::memory_order_relaxed);
  }
  return best == 1 ? ResidencyMethod::kCachestat : ResidencyMethod::kMincore;
}

bool CanCachestat(int fd) {
  struct statfs fs{};
  if (::fstatfs(fd, &fs) != 0) return true;
  const long type = static_cast<long>(fs.f_type);
  return type != kOverlayfsMagic && type != kFuseMagic;
}

ResidencyMethod ResidencyProbe::MethodFor(int fd) const {
  if (!per_file_) return method_;
  if (Best() == ResidencyMethod::kMincore || !CanCachestat(fd)) return ResidencyMethod::kMincore;
  return ResidencyMethod::kCachestat;
}

Result<ResidencyProbe::Count> ResidencyProbe::Probe(int fd, const std::string& path,
                                                    std::uint64_t offset, std::uint64_t length) {
  if (length == 0) return Count{};
  method_ = MethodFor(fd);
  if (method_ == ResidencyMethod::kCachestat) return Cachestat(fd, path, offset, length);
  auto count = Mincore(fd, path, offset, length);
  // A descriptor that cannot be mapped: cachestat's answer, where there is one.
  if (!count && per_file_ && count.error().sys_errno == ENODEV &&
      Best() == ResidencyMethod::kCachestat) {
    method_ = ResidencyMethod::kCachestat;
    return Cachestat(fd, path, offset, length);
  }
  return count;
}

Result<ResidencyProbe::Count> ResidencyProbe::Cachestat(int fd, const std::string& path,
                                                        std::uint64_t offset,
                                                        std::uint64_t length) {
  const std::uint64_t page = PageSize();
  CachestatResult r{};
  ++syscalls_;
  if (CallCachestat(fd, offset, length, &r) != 0) return ErrnoError(path, "cachestat", errno);
  std::uint64_t first = offset / page;
  std::uint64_t last = (offset + length - 1) / page;
  return Count{r.nr_cache, last - first + 1};
}

Result<ResidencyProbe::Count> ResidencyProbe::Sample(int fd, const std::string& path,
                                                     std::uint64_t offset, std::uint64_t length) {
  if (length <= kSampleSpan) return Probe(fd, path, offset, length);
  Count total;
  const std::uint64_t room = length - kSampleWindow;
  for (std::uint64_t i = 0; i < kSamples; ++i) {
    std::uint64_t at = offset + room / (kSamples - 1) * i;
    auto count = Probe(fd, path, at, kSampleWindow);
    if (!count) return count;
    total.cached += count->cached;
    total.pages += count->pages;
  }
  // No window cached: confirm with one exact probe, cheap when the range is
  // cold (its cost grows with what is cached), so warm islands between the
  // windows are still found.
  if (total.cached == 0) return Probe(fd, path, offset, length);
  return total;
}

// Maps the range PROT_READ in windows, asks mincore, unmaps; never reads it.
Result<ResidencyProbe::Count> ResidencyProbe::Mincore(int fd, const std::string& path,
                                                      std::uint64_t offset,
                                                      std::uint64_t length) {
  const std::uint64_t page = PageSize();
  const std::uint64_t end = offset + length;
  Count count;
  std::unique_ptr<unsigned char[]> vec(new unsigned char[kMincoreWindow / page]);
  for (std::uint64_t lo = AlignDown(offset, page); lo < end; lo += kMincoreWindow) {
    std::uint64_t span = std::min(kMincoreWindow, end - lo);
    syscalls_ += 3;
    void* map = ::mmap(nullptr, span, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(lo));
    if (map == MAP_FAILED) return ErrnoError(path, "mmap (residency probe)", errno);
    int ret = ::mincore(map, span, vec.get());
    int err = errno;
    ::munmap(map, span);
    if (ret != 0) return ErrnoError(path, "mincore", err);
    std::uint64_t pages = (span + page - 1) / page;
    for (std::uint64_t i = 0; i < pages; ++i) count.cached += vec[i] & 1;
    count.pages += pages;
  }
  return count;
}

namespace {

// Appends the pieces of [offset, offset + length) (within one granule-cut
// bisection step) to `out`, merging with the last piece when they agree.
void AppendPiece(std::vector<ResidentPiece>& out, std::uint64_t offset, std::uint64_t length,
                 bool resident) {
  if (!out.empty() && out.back().resident == resident &&
      out.back().offset + out.back().length == offset) {
    out.back().length += length;
    return;
  }
  out.push_back(ResidentPiece{offset, length, resident});
}

Status Bisect(ResidencyProbe& probe, int fd, const std::string& path, std::uint64_t offset,
              std::uint64_t length, std::uint64_t granule, bool sampled,
              std::vector<ResidentPiece>& out) {
  auto count = sampled ? probe.Sample(fd, path, offset, length)
                       : probe.Probe(fd, path, offset, length);
  if (!count) return std::move(count).error();
  if (count->cached == 0 || count->cached >= count->pages) {
    AppendPiece(out, offset, length, count->cached > 0);
    return {};
  }
  // The granule boundary nearest the middle, strictly inside the range.
  std::uint64_t end = offset + length;
  std::uint64_t mid = AlignDown(offset + length / 2, granule);
  if (mid <= offset) mid = AlignDown(offset, granule) + granule;
  if (mid >= end) {  // within one granule: the majority decides
    AppendPiece(out, offset, length, 2 * count->cached >= count->pages);
    return {};
  }
  if (Status s = Bisect(probe, fd, path, offset, mid - offset, granule, sampled, out); !s) {
    return s;
  }
  return Bisect(probe, fd, path, mid, end - mid, granule, sampled, out);
}

}  // namespace

Result<std::vector<ResidentPiece>> MapResidency(ResidencyProbe& probe, int fd,
                                                const std::string& path, std::uint64_t offset,
                                                std::uint64_t length, std::uint64_t granule,
                                                bool sampled) {
  std::vector<ResidentPiece> out;
  if (length == 0) return out;
  if (Status s = Bisect(probe, fd, path, offset, length, granule, sampled, out); !s) {
    return std::move(s).error();
  }
  return out;
}

namespace {

std::uint64_t SpanEnd(const Segment& s) {
  return s.offset + (s.count - 1) * s.src_stride + s.length;
}

// Marks segments of one file top-down (residency.h): `order` holds their
// indices sorted by offset.
class Marker {
 public:
  Marker(ResidencyProbe& probe, const FileTable& files, std::uint64_t granule,
         std::vector<Segment>& segments)
      : probe_(probe), files_(files), granule_(granule), segments_(segments) {}

  Status Mark(std::span<const std::size_t> order) {
    const Segment& first = segments_[order.front()];
    std::uint64_t lo = first.offset, hi = 0;
    for (std::size_t i : order) hi = std::max(hi, SpanEnd(segments_[i]));
    auto count = Probe(first.file, lo, hi - lo);
    if (!count) return std::move(count).error();
    if (count->cached == 0 || count->cached >= count->pages) {
      for (std::size_t i : order) Set(segments_[i], count->cached > 0);
      return {};
    }
    if (order.size() == 1) return MarkOne(order.front(), *count);
    std::size_t half = order.size() / 2;
    if (Status s = Mark(order.first(half)); !s) return s;
    return Mark(order.subspan(half));
  }

  // Pieces that MarkOne split off; appended to the segments afterwards.
  std::vector<Segment>& pieces() { return pieces_; }

 private:
  Result<ResidencyProbe::Count> Probe(std::uint32_t file, std::uint64_t offset,
                                      std::uint64_t length) {
    return probe_.Sample(files_.fd(file, false), files_.path(file), offset, length);
  }

  static void Set(Segment& s, bool resident) {
    s.direct = !resident;
    s.cold = false;
  }

  // One partly resident segment: a strided one goes by the majority; a plain
  // one is split into resident and cold pieces.
  Status MarkOne(std::size_t index, const ResidencyProbe::Count& count) {
    Segment& seg = segments_[index];
    if (seg.count > 1) {
      Set(seg, 2 * count.cached >= count.pages);
      return {};
    }
    const std::uint32_t file = seg.file;
    auto pieces = MapResidency(probe_, files_.fd(file, false), files_.path(file), seg.offset,
                               seg.length, granule_, /*sampled=*/true);
    if (!pieces) return std::move(pieces).error();
    const Segment whole = seg;
    for (std::size_t k = 0; k < pieces->size(); ++k) {
      const ResidentPiece& p = (*pieces)[k];
      Segment part = whole;
      part.offset = p.offset;
      part.length = p.length;
      part.dst = whole.dst + (p.offset - whole.offset);
      Set(part, p.resident);
      if (k == 0) {
        seg = part;
      } else {
        pieces_.push_back(part);
      }
    }
    return {};
  }

  ResidencyProbe& probe_;
  const FileTable& files_;
  const std::uint64_t granule_;
  std::vector<Segment>& segments_;
  std::vector<Segment> pieces_;
};

// Indices of the segments that read anything, by (file, offset).
std::vector<std::size_t> FileOrder(const std::vector<Segment>& segments) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].length > 0) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    const Segment& a = segments[x];
    const Segment& b = segments[y];
    return a.file != b.file ? a.file < b.file : a.offset < b.offset;
  });
  return order;
}

// Moves `bytes` from the front (or back) of plain direct segment `s` into a
// new buffered piece, appended to `out`.
void SplitOff(Segment& s, std::uint64_t bytes, bool front, std::vector<Segment>& out) {
  Segment piece = s;
  piece.direct = false;
  piece.cold = true;
  piece.length = bytes;
  s.length -= bytes;
  if (front) {
    s.offset += bytes;
    s.dst += bytes;
  } else {
    piece.offset = s.offset + s.length;
    piece.dst = s.dst + s.length;
  }
  out.push_back(piece);
}

// A direct segment's aligned read covers the alignment block it starts (or
// ends) in; when a buffered neighbour shares that block, the planner must
// stage the whole direct run (its slack would overwrite the neighbour). So
// the unaligned head or tail of such a direct segment (under one alignment
// block) is read buffered instead, and the rest direct from an aligned offset.
void AlignBoundaries(std::vector<Segment>& segments, std::uint64_t alignment) {
  if (alignment <= 1) return;
  std::vector<std::size_t> order = FileOrder(segments);
  std::vector<Segment> pieces;
  for (std::size_t k = 0; k + 1 < order.size(); ++k) {
    Segment& lo = segments[order[k]];
    Segment& hi = segments[order[k + 1]];
    if (lo.file != hi.file || lo.direct == hi.direct || lo.count > 1 || hi.count > 1) continue;
    const std::uint64_t lo_end = lo.offset + lo.length;
    if (lo_end <= AlignDown(hi.offset, alignment)) continue;  // no shared block
    if (hi.direct) {
      std::uint64_t head = (alignment - hi.offset % alignment) % alignment;
      if (head > 0) SplitOff(hi, std::min(head, hi.length), /*front=*/true, pieces);
    } else {
      std::uint64_t tail = lo_end % alignment;
      if (tail > 0) SplitOff(lo, std::min(tail, lo.length), /*front=*/false, pieces);
    }
  }
  segments.insert(segments.end(), pieces.begin(), pieces.end());
}

// Auto mode: probe and mark every segment that reads anything.
Status MarkAuto(std::vector<Segment>& segments, const FileTable& files, std::uint64_t granule,
                ResidencyProbe& probe) {
  std::vector<std::size_t> order = FileOrder(segments);
  Marker marker(probe, files, granule, segments);
  for (std::size_t begin = 0; begin < order.size();) {
    std::size_t end = begin;
    while (end < order.size() && segments[order[end]].file == segments[order[begin]].file) ++end;
    std::span<const std::size_t> one_file(order.data() + begin, end - begin);
    if (Status s = marker.Mark(one_file); !s) return s;
    begin = end;
  }
  segments.insert(segments.end(), marker.pieces().begin(), marker.pieces().end());
  AlignBoundaries(segments, files.alignment());
  return {};
}

// Opens the O_DIRECT descriptors the direct segments need. In auto mode a
// file whose file system refuses O_DIRECT is read buffered instead.
Status OpenDirectFiles(std::vector<Segment>& segments, FileTable& files, IoMode mode,
                       ModeReport& report) {
  std::vector<char> state(files.size(), 0);  // 0 unknown, 1 open, 2 refused
  for (const Segment& s : segments) {
    if (!s.direct || s.length == 0 || state[s.file] != 0) continue;
    Status opened = files.OpenDirect(s.file);
    if (opened) {
      state[s.file] = 1;
      continue;
    }
    if (mode == IoMode::kDirect || opened.error().code != ErrorCode::kUnsupported) {
      return opened;
    }
    state[s.file] = 2;
    if (!report.note.empty()) report.note += "; ";
    report.note += "O_DIRECT refused by the file system of " + files.path(s.file) +
                   ": its cold ranges are read buffered";
  }
  for (Segment& s : segments) {
    if (s.direct && state[s.file] == 2) {
      s.direct = false;
      s.cold = true;
    }
  }
  return {};
}

}  // namespace

Result<ModeReport> MarkResidency(std::vector<Segment>& segments, FileTable& files, IoMode mode,
                                 std::uint64_t granule) {
  ModeReport report;
  report.mode = mode;
  ResidencyProbe probe;
  if (mode == IoMode::kAuto) {
    if (Status s = MarkAuto(segments, files, granule, probe); !s) return std::move(s).error();
  } else {
    for (Segment& s : segments) {
      s.direct = mode == IoMode::kDirect;
      s.cold = false;
    }
  }
  report.method = probe.method();
  report.probes = probe.syscalls();
  if (Status s = OpenDirectFiles(segments, files, mode, report); !s) return std::move(s).error();
  return report;
}

}  // namespace shardload
