// shardload_copy_limits: what this machine's memory allows a warm load, on
// every CPU at once, with no loader in the way. A warm load is the kernel
// copying page-cache pages into the destination (copy_to_user: plain,
// cache-allocating stores, 4 KiB at a time); fio's warm figure copies into a
// buffer that stays in cache. The modes separate the two costs:
//   pread-cache  pread 1 MiB pieces of the shards into a per-thread buffer that
//                stays in cache (fio's warm pattern: source reads only)
//   pread-dram   pread 4 MiB pieces into one pre-faulted huge-page arena (a
//                warm reload: source reads plus destination writes)
//   copy-cached  DRAM -> DRAM in 4 KiB pieces with `rep movsb` (the store
//                kind the kernel's copy uses), between pre-faulted arenas
//   copy-nt      the same with non-temporal (streaming) stores, which skip
//                reading each destination line before writing it
// Each mode runs `--reps` times and prints the best and median GB/s.
// Independent of the shardload library: C++ standard library and POSIX.
#include <fcntl.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kHuge = 2ULL << 20;
constexpr std::size_t kPage = 4096;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "shardload_copy_limits: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

struct Shard {
  int fd;
  std::size_t size;
};

// A 2 MiB-aligned, MADV_HUGEPAGE, pre-faulted anonymous arena.
std::byte* Arena(std::size_t size) {
  void* p = ::mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (p == MAP_FAILED) Die("mmap");
  auto* base = reinterpret_cast<std::byte*>(
      (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1));
  (void)::madvise(base, size, MADV_HUGEPAGE);
  std::memset(base, 1, size);
  return base;
}

void CopyCached(std::byte* dst, const std::byte* src, std::size_t n) {
  for (std::size_t done = 0; done < n; done += kPage) {
    std::size_t len = std::min(kPage, n - done);
    std::byte* d = dst + done;
    const std::byte* s = src + done;
    asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(len) : : "memory");
  }
}

__attribute__((target("avx2"))) void CopyNtAvx2(std::byte* dst, const std::byte* src,
                                                 std::size_t n) {
  std::size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    for (std::size_t k = 0; k < 128; k += 32) {
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + k));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + k), v);
    }
  }
  std::memcpy(dst + i, src + i, n - i);
  _mm_sfence();
}

void CopyNtSse2(std::byte* dst, const std::byte* src, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), v);
  }
  std::memcpy(dst + i, src + i, n - i);
  _mm_sfence();
}

void CopyNt(std::byte* dst, const std::byte* src, std::size_t n) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  avx2 ? CopyNtAvx2(dst, src, n) : CopyNtSse2(dst, src, n);
}

void PreadAll(int fd, std::byte* buf, std::size_t len, std::size_t off) {
  while (len > 0) {
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(off));
    if (n <= 0) Die("pread");
    buf += n;
    len -= static_cast<std::size_t>(n);
    off += static_cast<std::size_t>(n);
  }
}

// Thread t of `threads` handles the t-th contiguous part of [0, total).
template <typename Fn>
double RunThreads(unsigned threads, std::size_t total, Fn fn) {
  std::vector<std::thread> pool;
  const auto start = Clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    std::size_t lo = total / threads * t;
    std::size_t hi = t + 1 == threads ? total : total / threads * (t + 1);
    pool.emplace_back([=] { fn(t, lo & ~(kPage - 1), hi == total ? hi : hi & ~(kPage - 1)); });
  }
  for (std::thread& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The shards laid end to end: maps a position to (shard, offset).
struct Files {
  std::vector<Shard> shards;
  std::size_t total = 0;
  template <typename Fn>
  void ForRange(std::size_t lo, std::size_t hi, std::size_t piece, Fn fn) const {
    std::size_t base = 0;
    for (const Shard& s : shards) {
      std::size_t a = std::max(lo, base), b = std::min(hi, base + s.size);
      for (std::size_t p = a; p < b; p += piece) fn(s.fd, p - base, std::min(piece, b - p), p);
      base += s.size;
    }
  }
};

double RunMode(const std::string& mode, const Files& files, unsigned threads, std::byte* arena,
               std::byte* source, std::size_t copy_size) {
  if (mode == "pread-cache") {
    double s = RunThreads(threads, files.total, [&](unsigned, std::size_t lo, std::size_t hi) {
      std::vector<std::byte> buf(1 << 20);
      files.ForRange(lo, hi, buf.size(), [&](int fd, std::size_t off, std::size_t len,
                                             std::size_t) { PreadAll(fd, buf.data(), len, off); });
    });
    return static_cast<double>(files.total) / s;
  }
  if (mode == "pread-dram") {
    double s = RunThreads(threads, files.total, [&](unsigned, std::size_t lo, std::size_t hi) {
      files.ForRange(lo, hi, 4 << 20, [&](int fd, std::size_t off, std::size_t len,
                                          std::size_t at) { PreadAll(fd, arena + at, len, off); });
    });
    return static_cast<double>(files.total) / s;
  }
  auto copy = mode == "copy-nt" ? CopyNt : CopyCached;
  double s = RunThreads(threads, copy_size, [&](unsigned, std::size_t lo, std::size_t hi) {
    copy(arena + lo, source + lo, hi - lo);
  });
  return static_cast<double>(copy_size) / s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  int reps = 5;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--threads" && i + 1 < argc) {
      threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "usage: shardload_copy_limits [--reps N] [--threads N] SHARD...\n");
      return 2;
    } else {
      paths.push_back(a);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: shardload_copy_limits [--reps N] [--threads N] SHARD...\n");
    return 2;
  }
  Files files;
  for (const std::string& p : paths) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die(p);
    off_t size = ::lseek(fd, 0, SEEK_END);
    if (size < 0) Die(p);
    files.shards.push_back({fd, static_cast<std::size_t>(size)});
    files.total += static_cast<std::size_t>(size);
  }
  const std::size_t copy_size = std::min<std::size_t>(files.total, 4ULL << 30);
  std::byte* arena = Arena(files.total);
  std::byte* source = Arena(copy_size);
  // Warm the page cache.
  (void)RunMode("pread-cache", files, threads, arena, source, copy_size);
  std::printf("%u threads, %.2f GB of shards, %.2f GB copied in memory, best / median of %d\n",
              threads, static_cast<double>(files.total) / 1e9,
              static_cast<double>(copy_size) / 1e9, reps);
  const char* modes[] = {"pread-cache", "pread-dram", "copy-cached", "copy-nt"};
  std::vector<std::vector<double>> rates(4);
  for (int r = 0; r < reps; ++r) {  // interleaved
    for (int m = 0; m < 4; ++m) {
      rates[m].push_back(RunMode(modes[m], files, threads, arena, source, copy_size) / 1e9);
    }
  }
  for (int m = 0; m < 4; ++m) {
    std::vector<double>& v = rates[m];
    std::sort(v.begin(), v.end());
    std::printf("%-12s %7.2f %7.2f GB/s\n", modes[m], v.back(), v[v.size() / 2]);
  }
  return 0;
}
