// Page-cache residency: which parts of a shard's byte range are in the page
// cache, and the one place a load decides, from that, which segments are read
// through the page cache and which with O_DIRECT (MarkResidency).
//
// The probe is cachestat(2) (Linux 6.5+): one system call counts the cached
// pages of a byte range without touching them, so a whole shard costs one
// call when it is uniformly warm or cold. Where the kernel lacks it (ENOSYS),
// mincore(2) on a transient PROT_READ mapping of the range (1 GiB windows):
// exact and free of side effects, unlike preadv2(RWF_NOWAIT) probes, which
// start readahead on a miss. The mapping is never read from.
//
// Stacking file systems: cachestat counts the pages of the descriptor's own
// inode, and an overlayfs (or FUSE passthrough) inode holds none: its reads
// and mappings go to the backing file's page cache, so cachestat reports a
// fully cached overlay file as cold, while a mapping (mincore) sees the real
// pages. So a probe not forced to one method picks per descriptor (fstatfs):
// mincore on overlayfs and FUSE, cachestat elsewhere (CanCachestat). A
// descriptor that cannot be mapped (ENODEV: FUSE with direct I/O) is probed
// with cachestat where the kernel has it.
//
// Cost: ranges are probed top-down (a file's whole used range, then halves
// of its segments, then halves of one segment's bytes down to a granule), so
// a uniformly warm or cold checkpoint costs one probe per shard, and a mixed
// one about 2 log2(bytes / granule) probes per boundary between warm and cold.
// A cachestat call costs about 3 us plus time per cached folio in its range
// (measured: 0.2-0.35 us per 4 KiB folio, 2 GB of 4 KiB pages ~170 ms), so
// MarkResidency samples a range longer than kSampleSpan: kSamples windows of
// kSampleWindow bytes spread over it (at most 1024 cached pages walked), and
// when no window is cached, one exact probe of the whole range (cheap, as
// little of it is cached). So warm islands in cold ranges are found; a cold
// stretch between two cached windows can be missed and is then read
// buffered (still correctly).
//
// Thread-compatible: a ResidencyProbe counts its calls; use one per thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plan/read_op.h"
#include "shardload/error.h"
#include "shardload/stats.h"

namespace shardload {

class FileTable;

enum class ResidencyMethod { kCachestat, kMincore };

const char* ResidencyMethodName(ResidencyMethod method);

// Whether cachestat(2) on `fd` sees the pages its reads and mappings use:
// false on overlayfs and FUSE (by fstatfs f_type), true elsewhere (and when
// fstatfs fails).
bool CanCachestat(int fd);

class ResidencyProbe {
 public:
  // The best method this kernel offers (cachestat if it answers; decided
  // once per process).
  static ResidencyMethod Best();
  // Picks the method per descriptor: Best(), unless CanCachestat says no.
  ResidencyProbe() : method_(Best()), per_file_(true) {}
  // Forced to `method` for every descriptor (tests; method comparisons).
  explicit ResidencyProbe(ResidencyMethod method) : method_(method), per_file_(false) {}

  struct Count {
    std::uint64_t cached = 0;  // pages of the range in the page cache
    std::uint64_t pages = 0;   // pages the range touches
  };
  // Counts the cached pages of bytes [offset, offset + length) of `fd`.
  // Errors name `path`.
  Result<Count> Probe(int fd, const std::string& path, std::uint64_t offset,
                      std::uint64_t length);
  // Probe of kSamples windows spread over a range longer than kSampleSpan
  // (the whole of a shorter one), then the whole range if no window is
  // cached: cost bounded whatever is cached.
  Result<Count> Sample(int fd, const std::string& path, std::uint64_t offset,
                       std::uint64_t length);

  // The method of the last probe (before any: the forced one or Best()).
  ResidencyMethod method() const { return method_; }
  std::uint64_t syscalls() const { return syscalls_; }

 private:
  ResidencyMethod MethodFor(int fd) const;

  Result<Count> Cachestat(int fd, const std::string& path, std::uint64_t offset,
                          std::uint64_t length);
  Result<Count> Mincore(int fd, const std::string& path, std::uint64_t offset,
                        std::uint64_t length);

  ResidencyMethod method_;
  bool per_file_;
  std::uint64_t syscalls_ = 0;
};

inline constexpr std::uint64_t kSamples = 16;
inline constexpr std::uint64_t kSampleWindow = 256ULL << 10;
inline constexpr std::uint64_t kSampleSpan = kSamples * kSampleWindow;  // 4 MiB

// A piece of a byte range, wholly resident or not.
struct ResidentPiece {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool resident = false;
};

// Splits [offset, offset + length) into maximal pieces that are resident or
// not, cut only at multiples of `granule` (a power of two, at least the page
// size). A granule partly in the cache counts as resident when at least half
// of its pages are. With granule == page size and `sampled` false the pieces
// are exact; `sampled` probes ranges longer than kSampleSpan by Sample.
Result<std::vector<ResidentPiece>> MapResidency(ResidencyProbe& probe, int fd,
                                                const std::string& path, std::uint64_t offset,
                                                std::uint64_t length, std::uint64_t granule,
                                                bool sampled = false);

// What MarkResidency decided.
struct ModeReport {
  IoMode mode = IoMode::kAuto;  // as asked
  ResidencyMethod method = ResidencyMethod::kCachestat;  // of the last probe
  std::uint64_t probes = 0;     // residency system calls made
  std::string note;             // e.g. why some files were read buffered
};

// Granule of auto mode's split of a partly resident tensor: 2 MiB pieces, cut
// at file offsets that are multiples of it (hence of any O_DIRECT alignment).
inline constexpr std::uint64_t kResidencyGranule = 2ULL << 20;

// Sets Segment::direct and Segment::cold on every segment for `mode`:
//   kBuffered  all buffered (no probing; cold stays false);
//   kDirect    all direct; opens the O_DIRECT descriptors (kUnsupported
//              where a file system refuses O_DIRECT);
//   kAuto      probes residency: resident ranges buffered, the rest direct;
//              a partly resident plain segment (count == 1) is split into
//              pieces at kResidencyGranule boundaries, a strided one goes by
//              the majority of its covering range. Files whose file system
//              refuses O_DIRECT are read buffered (cold = true), said in
//              `note`.
// `files` must hold buffered descriptors for kBuffered and kAuto.
Result<ModeReport> MarkResidency(std::vector<Segment>& segments, FileTable& files, IoMode mode,
                                 std::uint64_t granule = kResidencyGranule);

}  // namespace shardload
