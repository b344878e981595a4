// shardload_read_cost: measures the read planner's cost model constants
// (CostModel in include/shardload/read_strategy.h) on one file of this
// machine: what one read operation and one byte cost, for buffered reads
// from the page cache (warm), buffered reads of evicted pages (cold) and
// O_DIRECT reads, plus one byte of staging copy-out, plus mapped reads
// (ReadStrategy::kMapped) of cached pages.
//
// Method, per mode, one thread, plain pread into one buffer that every pass
// reuses and that is faulted in (every page written) before any timing, so
// no first-touch page fault is timed:
//   bytes: contiguous 1 MiB reads over `span` bytes  -> byte_ns = t / bytes
//   ops:   `runs` reads of `run` bytes, `stride` apart -> op_ns = t / runs - run * byte_ns
// Cold runs evict the file's pages first (POSIX_FADV_DONTNEED). O_DIRECT
// reads are serial here: op_ns is a read's latency, an upper bound on what
// an operation costs the engine with many reads in flight.
// Mapped (pages cached first; the file mapped once, as a load maps a shard):
//   op:    MADV_POPULATE_READ + MADV_DONTNEED of one page -> op_ns
//   bytes: the runs' covering range populated in `window` pieces, runs
//          copied out, each window's entries dropped (MADV_DONTNEED)
//          -> byte_ns = (t - windows * op_ns - runs * run * copy_byte_ns) / covered
// Not a test; uses only the standard library and POSIX.
// Thread-compatible: single-threaded.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string path;
  std::uint64_t span = 256ULL << 20;  // bytes of the byte-cost pass
  std::uint64_t run = 3584;           // bytes per run (Llama-3-8B down_proj, W = 8)
  std::uint64_t stride = 28672;       // run distance
  std::uint64_t runs = 8192;
  std::uint64_t window = 32ULL << 20;  // mapped reads: largest mapping (PlanOptions::map_window)
  int reps = 5;
};

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

// A page-aligned buffer with every page written (faulted in) before use.
void* AlignedBuffer(std::size_t size) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, size) != 0) std::abort();
  auto* bytes = static_cast<volatile char*>(p);
  for (std::size_t i = 0; i < size; i += 4096) bytes[i] = 1;
  std::memset(p, 0, size);
  return p;
}

void Evict(int fd) {
  if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) std::perror("fadvise");
}

void Warm(int fd, std::uint64_t bytes, char* buf) {
  for (std::uint64_t at = 0; at < bytes; at += 1 << 20) {
    if (pread(fd, buf, 1 << 20, static_cast<off_t>(at)) < 0) std::perror("pread");
  }
}

// Seconds for contiguous 1 MiB reads of [0, span).
double Bytes(int fd, std::uint64_t span, char* buf) {
  auto t0 = Clock::now();
  for (std::uint64_t at = 0; at < span; at += 1 << 20) {
    if (pread(fd, buf, 1 << 20, static_cast<off_t>(at)) != (1 << 20)) std::perror("pread");
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds for `runs` reads of `run` bytes, `stride` apart, starting at
// `base`. O_DIRECT: each read widened to 4096-aligned bounds.
double Runs(int fd, const Options& o, std::uint64_t base, bool direct, char* buf) {
  auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.runs; ++i) {
    std::uint64_t at = base + i * o.stride;
    std::uint64_t len = o.run;
    if (direct) {
      std::uint64_t lo = at & ~4095ULL;
      len = ((at + len + 4095) & ~4095ULL) - lo;
      at = lo;
    }
    if (pread(fd, buf, len, static_cast<off_t>(at)) < 0) std::perror("pread");
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double op_ns = 0, byte_ns = 0;
  double op_lo = 1e300, op_hi = 0, byte_lo = 1e300, byte_hi = 0;
};

Result Measure(const Options& o, const char* mode) {
  const bool direct = std::strcmp(mode, "direct") == 0;
  const bool cold = std::strcmp(mode, "cold") == 0;
  int fd = open(o.path.c_str(), O_RDONLY | (direct ? O_DIRECT : 0));
  if (fd < 0) {
    std::perror(o.path.c_str());
    std::exit(1);
  }
  char* buf = static_cast<char*>(AlignedBuffer(2 << 20));
  const std::uint64_t run_span = o.runs * o.stride;
  if (!cold && !direct) Warm(fd, o.span + run_span + (1 << 20), buf);
  if (!cold) {  // untimed: every code path and buffer page touched once
    Bytes(fd, 4 << 20, buf);
    Runs(fd, o, o.span, direct, buf);
  }
  std::vector<double> byte_ns, op_ns;
  for (int r = 0; r < o.reps; ++r) {
    if (cold) Evict(fd);
    double b = Bytes(fd, o.span, buf) * 1e9 / static_cast<double>(o.span);
    if (cold) Evict(fd);
    // The run pass reads beyond the byte pass's span (fresh pages when cold).
    double t = Runs(fd, o, o.span, direct, buf) * 1e9 / static_cast<double>(o.runs);
    double per_op = t - static_cast<double>(o.run) * b;
    byte_ns.push_back(b);
    op_ns.push_back(per_op);
  }
  close(fd);
  std::free(buf);
  Result res;
  res.byte_ns = Median(byte_ns);
  res.op_ns = Median(op_ns);
  for (double x : byte_ns) res.byte_lo = std::min(res.byte_lo, x), res.byte_hi = std::max(res.byte_hi, x);
  for (double x : op_ns) res.op_lo = std::min(res.op_lo, x), res.op_hi = std::max(res.op_hi, x);
  return res;
}

// Seconds for one window of `len` bytes at `at` of the mapping `map`:
// populate, drop.
double MapOnce(char* map, std::uint64_t at, std::uint64_t len) {
  auto t0 = Clock::now();
  madvise(map + at, len, MADV_POPULATE_READ);
  madvise(map + at, len, MADV_DONTNEED);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds for the run pattern at `base` read through `window` pieces of the
// mapping `map` into `dst` (runs adjacent there), as mapped ReadOps do;
// returns the number of windows in *windows.
double MappedRuns(char* map, const Options& o, std::uint64_t base, char* dst,
                  std::uint64_t* windows) {
  const std::uint64_t end = base + (o.runs - 1) * o.stride + o.run;
  auto t0 = Clock::now();
  *windows = 0;
  for (std::uint64_t lo = base; lo < end; lo += o.window) {
    const std::uint64_t hi = std::min(end, lo + o.window);
    const std::uint64_t page_lo = lo & ~4095ULL;
    madvise(map + page_lo, hi - page_lo, MADV_POPULATE_READ);
    // Runs (or their parts) inside [lo, hi).
    std::uint64_t first = lo <= base ? 0 : (lo - base) / o.stride;
    for (std::uint64_t i = first; i < o.runs; ++i) {
      const std::uint64_t run = base + i * o.stride;
      if (run >= hi) break;
      const std::uint64_t a = std::max(run, lo), b = std::min(run + o.run, hi);
      if (a < b) std::memcpy(dst + i * o.run + (a - run), map + a, b - a);
    }
    madvise(map + page_lo, hi - page_lo, MADV_DONTNEED);
    ++*windows;
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Result MeasureMapped(const Options& o, double copy_byte_ns) {
  int fd = open(o.path.c_str(), O_RDONLY);
  if (fd < 0) std::perror(o.path.c_str()), std::exit(1);
  char* buf = static_cast<char*>(AlignedBuffer(2 << 20));
  char* dst = static_cast<char*>(AlignedBuffer(o.runs * o.run));
  const std::uint64_t covered = (o.runs - 1) * o.stride + o.run;
  Warm(fd, o.span + o.runs * o.stride + (1 << 20), buf);
  const std::uint64_t map_len = o.span + o.runs * o.stride;
  auto* map = static_cast<char*>(mmap(nullptr, map_len, PROT_READ, MAP_SHARED, fd, 0));
  if (map == MAP_FAILED) std::perror("mmap"), std::exit(1);
  std::uint64_t windows = 0;
  MappedRuns(map, o, o.span, dst, &windows);  // untimed warm-up
  std::vector<double> byte_ns, op_ns;
  for (int r = 0; r < o.reps; ++r) {
    double op = 0;
    constexpr int kMaps = 256;
    for (int k = 0; k < kMaps; ++k) op += MapOnce(map, o.span + k * 4096ULL, 4096);
    op = op * 1e9 / kMaps;
    double t = MappedRuns(map, o, o.span, dst, &windows) * 1e9;
    double copy = static_cast<double>(o.runs * o.run) * copy_byte_ns;
    op_ns.push_back(op);
    byte_ns.push_back((t - static_cast<double>(windows) * op - copy) / static_cast<double>(covered));
  }
  munmap(map, map_len);
  close(fd);
  std::free(buf);
  std::free(dst);
  Result res;
  res.byte_ns = Median(byte_ns);
  res.op_ns = Median(op_ns);
  for (double x : byte_ns) res.byte_lo = std::min(res.byte_lo, x), res.byte_hi = std::max(res.byte_hi, x);
  for (double x : op_ns) res.op_lo = std::min(res.op_lo, x), res.op_hi = std::max(res.op_hi, x);
  return res;
}

// ns per byte of copying 1 MiB from a hot staging buffer to fresh-ish
// destinations, as the staged copy-out does (runs of `run` bytes).
double CopyNs(const Options& o) {
  const std::size_t dst_size = 256ULL << 20;
  char* staging = static_cast<char*>(AlignedBuffer(1 << 20));
  char* dst = static_cast<char*>(AlignedBuffer(dst_size));
  std::vector<double> ns;
  for (int r = 0; r < o.reps; ++r) {
    auto t0 = Clock::now();
    std::uint64_t copied = 0;
    for (std::uint64_t at = 0; at + o.run <= dst_size; at += o.run) {
      std::memcpy(dst + at, staging + (at % ((1 << 20) - o.run)), o.run);
      copied += o.run;
    }
    ns.push_back(std::chrono::duration<double>(Clock::now() - t0).count() * 1e9 /
                 static_cast<double>(copied));
  }
  std::free(staging);
  std::free(dst);
  return Median(ns);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::uint64_t { return i + 1 < argc ? std::strtoull(argv[++i], nullptr, 0) : 0; };
    if (a == "--run") o.run = next();
    else if (a == "--stride") o.stride = next();
    else if (a == "--runs") o.runs = next();
    else if (a == "--span") o.span = next();
    else if (a == "--reps") o.reps = static_cast<int>(next());
    else if (a == "--window") o.window = next();
    else if (a[0] != '-') o.path = a;
    else {
      std::fprintf(stderr, "usage: %s FILE [--run B] [--stride B] [--runs N] [--span B] [--window B] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  if (o.path.empty()) {
    std::fprintf(stderr, "usage: %s FILE (a file of at least span + runs*stride bytes)\n", argv[0]);
    return 2;
  }
  std::printf("{\"file\":\"%s\",\"run\":%llu,\"stride\":%llu,\"runs\":%llu,\"span\":%llu,\"reps\":%d",
              o.path.c_str(), static_cast<unsigned long long>(o.run),
              static_cast<unsigned long long>(o.stride), static_cast<unsigned long long>(o.runs),
              static_cast<unsigned long long>(o.span), o.reps);
  auto print = [](const char* mode, const Result& r) {
    std::printf(",\"%s\":{\"op_ns\":%.0f,\"byte_ns\":%.4f,\"op_ns_range\":[%.0f,%.0f],"
                "\"byte_ns_range\":[%.4f,%.4f]}",
                mode, r.op_ns, r.byte_ns, r.op_lo, r.op_hi, r.byte_lo, r.byte_hi);
    std::fflush(stdout);
  };
  for (const char* mode : {"warm", "cold", "direct"}) print(mode, Measure(o, mode));
  const double copy = CopyNs(o);
  print("mapped", MeasureMapped(o, copy));
  std::printf(",\"copy_byte_ns\":%.4f}\n", copy);
  return 0;
}
