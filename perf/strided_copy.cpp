// shardload_strided_copy: an experiment (issue 11) comparing ways to read a
// strided slice (runs of `run` bytes, `stride` apart) of a file whose pages
// are in the page cache, one thread, into a reused, already-faulted
// destination, interleaved round by round:
//   exact     one pread per run;
//   gather    preadv of the covering range, runs to the destination and the
//             gaps to one scratch buffer (IOV_MAX iovecs per call);
//   map       mmap the window (MAP_SHARED, PROT_READ), memcpy the runs (page
//             faults with fault-around), munmap;
//   map-pop   the same after MADV_POPULATE_READ of the window;
//   map-mpop  the same with MAP_POPULATE;
//   map-huge  map-pop at an address congruent to the offset mod 2 MiB, with
//             MADV_HUGEPAGE (2 MiB page-cache folios map with one PMD).
// Prints ns per run and GB/s of delivered bytes, median and range per method.
// Not a test; only the standard library and POSIX.
// Thread-compatible: single-threaded.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string path;
  std::uint64_t offset = 64ULL << 20;
  std::uint64_t run = 3584;
  std::uint64_t stride = 28672;
  std::uint64_t runs = 4096;       // one down_proj at W = 8: 117 MB covered
  std::uint64_t window = 32ULL << 20;  // mapping size (map methods)
  int reps = 7;
};

struct Ctx {
  const Options& o;
  int fd;
  char* dst;
  char* scratch;
};

void Exact(Ctx& c) {
  for (std::uint64_t i = 0; i < c.o.runs; ++i) {
    off_t at = static_cast<off_t>(c.o.offset + i * c.o.stride);
    if (pread(c.fd, c.dst + i * c.o.run, c.o.run, at) != static_cast<ssize_t>(c.o.run)) std::abort();
  }
}

void Gather(Ctx& c) {
  std::vector<iovec> iov;
  const std::uint64_t gap = c.o.stride - c.o.run;
  std::uint64_t i = 0;
  while (i < c.o.runs) {
    iov.clear();
    const std::uint64_t first = i;
    std::uint64_t bytes = 0;
    for (; i < c.o.runs && iov.size() + 2 <= IOV_MAX; ++i) {
      iov.push_back({c.dst + i * c.o.run, c.o.run});
      bytes += c.o.run;
      if (i + 1 < c.o.runs) iov.push_back({c.scratch, gap}), bytes += gap;
    }
    off_t at = static_cast<off_t>(c.o.offset + first * c.o.stride);
    if (preadv(c.fd, iov.data(), static_cast<int>(iov.size()), at) != static_cast<ssize_t>(bytes)) std::abort();
  }
}

// A mapping of `len` file bytes at `lo` whose address is congruent to `lo`
// modulo 2 MiB, so page-cache folios of 2 MiB can be mapped by one PMD.
void* MapAligned(int fd, std::uint64_t lo, std::uint64_t len) {
  const std::uint64_t huge = 2ULL << 20;
  void* r = mmap(nullptr, len + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) std::abort();
  auto base = reinterpret_cast<std::uintptr_t>(r);
  std::uintptr_t at = ((base + huge - 1) & ~(huge - 1)) + (lo & (huge - 1));
  if (at >= base + huge) at -= huge;
  void* p = mmap(reinterpret_cast<void*>(at), len, PROT_READ, MAP_SHARED | MAP_FIXED, fd,
                 static_cast<off_t>(lo));
  if (p == MAP_FAILED) std::abort();
  if (at > base) munmap(r, at - base);
  if (base + len + huge > at + len) munmap(reinterpret_cast<void*>(at + len), base + len + huge - (at + len));
  madvise(p, len, MADV_HUGEPAGE);
  return p;
}

// mode 0: faults; 1: MADV_POPULATE_READ; 2: MAP_POPULATE; 3: 1 + 2 MiB
// aligned with MADV_HUGEPAGE.
void Map(Ctx& c, int mode) {
  const std::uint64_t end = c.o.offset + (c.o.runs - 1) * c.o.stride + c.o.run;
  std::uint64_t i = 0;
  for (std::uint64_t lo = c.o.offset & ~4095ULL; lo < end; lo += c.o.window) {
    const std::uint64_t hi = std::min(end, lo + c.o.window);
    const std::uint64_t len = ((hi + 4095) & ~4095ULL) - lo;
    void* p = mode == 3 ? MapAligned(c.fd, lo, len)
                        : mmap(nullptr, len, PROT_READ, MAP_SHARED | (mode == 2 ? MAP_POPULATE : 0),
                               c.fd, static_cast<off_t>(lo));
    if (p == MAP_FAILED) std::abort();
    if ((mode == 1 || mode == 3) && madvise(p, len, MADV_POPULATE_READ) != 0) std::perror("madvise");
    const char* base = static_cast<const char*>(p);
    for (; i < c.o.runs; ++i) {
      const std::uint64_t at = c.o.offset + i * c.o.stride;
      if (at + c.o.run > hi) break;
      if (at < lo) std::abort();
      std::memcpy(c.dst + i * c.o.run, base + (at - lo), c.o.run);
    }
    // A run cut by the window edge: copy its parts from both windows (rare; here: next window).
    if (i < c.o.runs && c.o.offset + i * c.o.stride < hi) {
      const std::uint64_t at = c.o.offset + i * c.o.stride;
      std::memcpy(c.dst + i * c.o.run, base + (at - lo), hi - at);
      munmap(p, len);
      // next window starts at hi aligned down: keep the simple path by re-reading the tail.
      if (pread(c.fd, c.dst + i * c.o.run + (hi - at), c.o.run - (hi - at),
                static_cast<off_t>(hi)) < 0) std::abort();
      ++i;
      continue;
    }
    munmap(p, len);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
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
    else if (a == "--offset") o.offset = next();
    else if (a == "--window") o.window = next();
    else if (a == "--reps") o.reps = static_cast<int>(next());
    else if (a[0] != '-') o.path = a;
    else return std::fprintf(stderr, "usage: %s FILE [--run B] [--stride B] [--runs N] [--offset B] [--window B] [--reps N]\n", argv[0]), 2;
  }
  if (o.path.empty() || o.window % 4096 != 0) return std::fprintf(stderr, "need FILE; window a multiple of 4096\n"), 2;
  int fd = open(o.path.c_str(), O_RDONLY);
  if (fd < 0) return std::perror(o.path.c_str()), 1;
  const std::uint64_t span = (o.runs - 1) * o.stride + o.run;
  std::vector<char> warm(1 << 20);
  for (std::uint64_t at = o.offset & ~4095ULL; at < o.offset + span; at += warm.size()) {
    if (pread(fd, warm.data(), warm.size(), static_cast<off_t>(at)) < 0) std::abort();
  }
  std::vector<char> dst(o.runs * o.run, 1), scratch(o.stride, 1), oracle(o.runs * o.run);
  Ctx c{o, fd, dst.data(), scratch.data()};
  Ctx oc{o, fd, oracle.data(), scratch.data()};
  Exact(oc);
  struct Method {
    const char* name;
    std::function<void(Ctx&)> fn;
    std::vector<double> s;
  };
  std::vector<Method> methods = {
      {"exact", Exact, {}},
      {"gather", Gather, {}},
      {"map", [](Ctx& x) { Map(x, 0); }, {}},
      {"map-pop", [](Ctx& x) { Map(x, 1); }, {}},
      {"map-mpop", [](Ctx& x) { Map(x, 2); }, {}},
      {"map-huge", [](Ctx& x) { Map(x, 3); }, {}},
  };
  for (int r = 0; r < o.reps; ++r) {
    for (Method& m : methods) {
      std::memset(dst.data(), 0, dst.size());
      auto t0 = Clock::now();
      m.fn(c);
      m.s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      if (std::memcmp(dst.data(), oracle.data(), dst.size()) != 0) {
        std::fprintf(stderr, "%s: wrong bytes\n", m.name);
        return 1;
      }
    }
  }
  std::printf("run %llu stride %llu runs %llu window %llu: delivered %.1f MB, covered %.1f MB\n",
              (unsigned long long)o.run, (unsigned long long)o.stride, (unsigned long long)o.runs,
              (unsigned long long)o.window, dst.size() / 1e6, span / 1e6);
  for (Method& m : methods) {
    double med = Median(m.s);
    double lo = *std::min_element(m.s.begin(), m.s.end());
    double hi = *std::max_element(m.s.begin(), m.s.end());
    std::printf("%-9s %8.3f ms [%.3f..%.3f]  %7.0f ns/run  %6.2f GB/s delivered\n", m.name,
                med * 1e3, lo * 1e3, hi * 1e3, med * 1e9 / o.runs, dst.size() / med / 1e9);
  }
  close(fd);
  return 0;
}
