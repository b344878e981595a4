// SplitForGds and RunGdsReads (gds.h).
// Thread-safe: RunGdsReads' workers share an atomic cursor over the reads,
// atomic counters and the first error under a mutex; they are joined before
// it returns.
#include "device/gds.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "device/clip.h"

namespace shardload {
namespace {

std::uint64_t AlignUp(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }
std::uint64_t AlignDown(std::uint64_t v, std::uint64_t a) { return v & ~(a - 1); }

struct Range {
  std::uintptr_t lo = 0;
  std::uintptr_t hi = 0;
};

bool Contiguous(const Segment& s) {
  return s.count == 1 || (s.src_stride == s.length && s.dst_stride == s.length);
}

// The aligned middle of S as GDS reads (appended to OUT), and its device range.
std::optional<Range> AlignedMiddle(const Segment& s, std::uint32_t tensor, std::uint64_t a,
                                   std::uint64_t chunk, std::vector<GdsRead>& out) {
  const std::uint64_t length = s.length * s.count;
  const std::uint64_t lo = AlignUp(s.offset, a);
  const std::uint64_t hi = AlignDown(s.offset + length, a);
  if (hi <= lo) return std::nullopt;
  const std::uintptr_t device = reinterpret_cast<std::uintptr_t>(s.dst) + (lo - s.offset);
  if (device % a != 0) return std::nullopt;  // e.g. a caller's unaligned buffer
  for (std::uint64_t at = lo; at < hi; at += chunk) {
    out.push_back(GdsRead{s.file, at, std::min(chunk, hi - at),
                          reinterpret_cast<std::byte*>(device + (at - lo)), tensor});
  }
  return Range{device, device + (hi - lo)};
}

// Appends [lo, hi) of T as a staged tensor with SEGS clipped to it.
void AddStaged(const DeviceTensor& t, std::uintptr_t lo, std::uintptr_t hi,
               const std::vector<const Segment*>& segs, GdsSplit& split) {
  const auto index = static_cast<std::uint32_t>(split.staged.size());
  split.staged.push_back(DeviceTensor{reinterpret_cast<std::byte*>(lo), hi - lo, t.zero_fill,
                                      t.name});
  const std::size_t first = split.staged_segments.size();
  for (const Segment* s : segs) ClipSegment(*s, lo, hi, split.staged_segments);
  for (std::size_t k = first; k < split.staged_segments.size(); ++k) {
    split.staged_segments[k].tag = index;
  }
}

}  // namespace

GdsSplit SplitForGds(std::span<const DeviceTensor> tensors, std::span<const Segment> segments,
                     std::span<const CuFileHandle> handles, std::uint64_t alignment,
                     std::uint64_t chunk) {
  chunk = std::max(AlignDown(chunk, alignment), alignment);
  std::vector<std::vector<const Segment*>> by(tensors.size());
  for (const Segment& s : segments) {
    if (s.tag < tensors.size() && s.length > 0) by[s.tag].push_back(&s);
  }
  GdsSplit split;
  for (std::uint32_t i = 0; i < tensors.size(); ++i) {
    const DeviceTensor& t = tensors[i];
    std::vector<Range> direct;
    for (const Segment* s : by[i]) {
      if (t.zero_fill || !s->direct || s->file >= handles.size() || handles[s->file] == nullptr ||
          !Contiguous(*s)) {
        continue;
      }
      if (auto r = AlignedMiddle(*s, i, alignment, chunk, split.reads)) {
        direct.push_back(*r);
        split.gds_bytes += r->hi - r->lo;
      }
    }
    std::sort(direct.begin(), direct.end(), [](Range x, Range y) { return x.lo < y.lo; });
    std::uintptr_t cursor = reinterpret_cast<std::uintptr_t>(t.device);
    const std::uintptr_t end = cursor + t.size;
    for (const Range& r : direct) {
      if (r.lo > cursor) AddStaged(t, cursor, r.lo, by[i], split);
      cursor = std::max(cursor, r.hi);
    }
    if (cursor < end) AddStaged(t, cursor, end, by[i], split);
  }
  return split;
}

GdsHandles::~GdsHandles() {
  for (CuFileHandle h : handles_) {
    if (h != nullptr) cufile_.handle_deregister(h);
  }
}

Status GdsHandles::Register(std::uint32_t file, int fd) {
  CuFileDescr descr;
  descr.handle.fd = fd;
  CuFileHandle h = nullptr;
  CuFileStatus st = cufile_.handle_register(&h, &descr);
  if (st.err != kCuFileSuccess || h == nullptr) {
    return MakeError(ErrorCode::kUnsupported, "", "", cufile_.Describe("cuFileHandleRegister", st));
  }
  handles_[file] = h;
  return {};
}

GdsBuffer::~GdsBuffer() {
  if (base_ != nullptr) (void)cufile_.buf_deregister(base_);
}

Status GdsBuffer::Register(const std::byte* base, std::size_t size) {
  CuFileStatus st = cufile_.buf_register(base, size, 0);
  if (st.err != kCuFileSuccess) {
    return MakeError(ErrorCode::kUnsupported, "", "", cufile_.Describe("cuFileBufRegister", st));
  }
  base_ = base;
  return {};
}

namespace {

// What the workers of one RunGdsReads share.
struct GdsShared {
  GdsShared(const CuFileSession& c, const CudaRuntime& rt, std::span<const GdsRead> r,
            const GdsFiles& f, std::span<const DeviceTensor> t, const GdsRunOptions& o)
      : cufile(c), runtime(rt), reads(r), files(f), tensors(t), options(o) {}

  const CuFileSession& cufile;
  const CudaRuntime& runtime;
  std::span<const GdsRead> reads;
  const GdsFiles& files;
  std::span<const DeviceTensor> tensors;
  const GdsRunOptions& options;
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> bytes{0}, calls{0}, short_reads{0};
  std::atomic<bool> local_stop{false};
  std::mutex mu;
  std::optional<Error> error;

  std::atomic<bool>& stop() { return options.stop != nullptr ? *options.stop : local_stop; }

  void Fail(Error e) {
    std::lock_guard lock(mu);
    if (!error) error = std::move(e);
    stop().store(true, std::memory_order_relaxed);
  }
};

Error ReadError(GdsShared& g, const GdsRead& r, std::uint64_t at, std::uint64_t n,
                ssize_t got, int err) {
  std::string detail = "cuFileRead of " + std::to_string(n) + " bytes at offset " +
                       std::to_string(at) + " into cuda:" + std::to_string(g.runtime.device) +
                       ": ";
  Error e = MakeError(ErrorCode::kIoError, g.files.paths[r.file],
                      std::string(g.tensors[r.tensor].name), "");
  if (got == -1) {
    detail += std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
    e.sys_errno = err;
  } else if (got < 0) {
    const int code = static_cast<int>(-got);
    detail += CuFileErrorName(code) + " (cuFile error " + std::to_string(code) + ")";
  } else {
    detail += "0 bytes read: the file ends before the tensor does (changed while loading?)";
  }
  e.detail = std::move(detail);
  e.offset = at;
  return e;
}

// One read, resumed after a short one.
bool ReadOne(GdsShared& g, const GdsRead& r) {
  const CuFileHandle handle = g.files.handles[r.file];
  std::uint64_t done = 0;
  while (done < r.length) {
    std::byte* to = r.device + done;
    const std::byte* base = g.options.registered_base != nullptr ? g.options.registered_base : to;
    const std::uint64_t left = r.length - done;
    errno = 0;
    const ssize_t got = g.cufile.read(handle, const_cast<std::byte*>(base), left,
                                      static_cast<off_t>(r.offset + done),
                                      static_cast<off_t>(to - base));
    const int err = errno;
    g.calls.fetch_add(1, std::memory_order_relaxed);
    if (got <= 0) {
      g.Fail(ReadError(g, r, r.offset + done, left, got, err));
      return false;
    }
    const auto n = std::min<std::uint64_t>(static_cast<std::uint64_t>(got), left);
    if (n < left) g.short_reads.fetch_add(1, std::memory_order_relaxed);
    done += n;
    g.bytes.fetch_add(n, std::memory_order_relaxed);
    if (g.options.delivered) g.options.delivered(n);
  }
  return true;
}

void Work(GdsShared& g) {
  if (CudaStatus s = g.runtime.Activate(); s != kCudaSuccess) {
    g.Fail(CudaError(g.runtime, ErrorCode::kIoError, "", "cudaSetDevice (a cuFile thread)", s));
    return;
  }
  while (!g.stop().load(std::memory_order_relaxed)) {
    const std::size_t k = g.next.fetch_add(1, std::memory_order_relaxed);
    if (k >= g.reads.size() || !ReadOne(g, g.reads[k])) return;
  }
}

}  // namespace

Result<GdsReport> RunGdsReads(const CuFileSession& cufile, const CudaRuntime& runtime,
                              std::span<const GdsRead> reads, const GdsFiles& files,
                              std::span<const DeviceTensor> tensors,
                              const GdsRunOptions& options) {
  GdsShared g(cufile, runtime, reads, files, tensors, options);
  const std::size_t n =
      std::clamp<std::size_t>(options.threads, 1, std::max<std::size_t>(reads.size(), 1));
  std::vector<std::thread> workers;
  workers.reserve(n - 1);
  for (std::size_t i = 1; i < n; ++i) {
    try {
      workers.emplace_back([&g] { Work(g); });
    } catch (const std::system_error&) {
      break;  // fewer threads: the others take their share
    }
  }
  Work(g);
  for (std::thread& w : workers) w.join();
  if (g.error) return std::move(*g.error);
  return GdsReport{g.bytes.load(), g.calls.load(), g.short_reads.load()};
}

}  // namespace shardload
