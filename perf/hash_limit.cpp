// shardload_hash_limit: the machine's SHA-256 limit with OpenSSL's libcrypto
// (the library `shardload verify` uses): one thread hashing a 1 MiB buffer
// (cache-resident, as each of verify's 1 MiB reads is when it is hashed)
// over and over, then one thread per CPU at once, each on its own buffer.
// Prints per run the wall-clock GB/s and
// the GB per CPU-second (which a machine shared with other work does not
// bend), and the limit = single-thread rate x CPUs. Then one thread on a
// 512 MiB buffer (bytes in memory, not in cache: what hashing bytes that a
// DMA wrote, or a loaded tensor, costs), plainly and in 1 KiB pieces with
// the one 8 KiB further on prefetched (Sha256::UpdateFromMemory). Not a test.
// Usage: shardload_hash_limit [--seconds S] [--threads N]
#include <openssl/evp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kBuffer = 1ULL << 20;  // stays in L2: the hash's own rate
constexpr std::size_t kMemoryBuffer = 512ULL << 20;  // far larger than any cache
constexpr std::size_t kPiece = 1ULL << 10;   // prefetched pieces (Sha256::kMemoryPiece)
constexpr std::size_t kAhead = 8ULL << 10;   // how far ahead (Sha256::kMemoryAhead)

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// What one thread hashed, and in how long (its buffer's filling excluded).
struct Share {
  std::size_t bytes = 0;
  double wall = 0, cpu = 0;
};

// Hashes bytes [0, size) of `data` in updates of `piece` bytes; when
// `prefetch`, each update first prefetches the piece kAhead bytes further on
// (what Sha256::UpdateFromMemory does).
void HashOnce(EVP_MD_CTX* ctx, const unsigned char* data, std::size_t size, std::size_t piece,
              bool prefetch) {
  for (std::size_t at = 0; at < size; at += piece) {
    if (prefetch) {
      const std::size_t end = std::min(size, at + kAhead + piece);
      for (std::size_t p = at + kAhead; p < end; p += 64) __builtin_prefetch(data + p);
    }
    EVP_DigestUpdate(ctx, data + at, std::min(piece, size - at));
  }
}

// Hashes its own buffer of `size` bytes over and over for `seconds`.
Share HashFor(double seconds, std::size_t size, bool prefetch) {
  std::vector<unsigned char> buffer(size);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<unsigned char>(i * 131);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  Share share;
  const double cpu0 = ThreadCpuSeconds();
  auto start = std::chrono::steady_clock::now();
  while ((share.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                           .count()) < seconds) {
    HashOnce(ctx, buffer.data(), size, prefetch ? kPiece : kBuffer, prefetch);
    share.bytes += size;
  }
  share.cpu = ThreadCpuSeconds() - cpu0;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  return share;
}

struct Rate {
  double wall_gbps, cpu_gbps;
};

// `threads` threads at once; wall = the longest hashing loop, CPU = the
// hashing threads' CPU time.
Rate Run(unsigned threads, double seconds, std::size_t size = kBuffer, bool prefetch = false) {
  std::vector<Share> shares(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { shares[t] = HashFor(seconds, size, prefetch); });
  }
  for (auto& t : pool) t.join();
  double total = 0, wall = 0, cpu = 0;
  for (const Share& s : shares) {
    total += static_cast<double>(s.bytes);
    wall = std::max(wall, s.wall);
    cpu += s.cpu;
  }
  return {total / wall / 1e9, total / cpu / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  unsigned threads = static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0) threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  Rate one = Run(1, seconds);
  Rate all = Run(threads, seconds);
  Rate memory = Run(1, seconds, kMemoryBuffer, false);
  Rate prefetched = Run(1, seconds, kMemoryBuffer, true);
  std::printf("{\"cpus\":%u,\"single_wall_gb_per_s\":%.3f,\"single_cpu_gb_per_s\":%.3f,"
              "\"all_wall_gb_per_s\":%.3f,\"all_cpu_gb_per_s\":%.3f,"
              "\"limit_gb_per_s\":%.3f,\"memory_cpu_gb_per_s\":%.3f,"
              "\"memory_prefetched_cpu_gb_per_s\":%.3f}\n",
              threads, one.wall_gbps, one.cpu_gbps, all.wall_gbps, all.cpu_gbps,
              one.cpu_gbps * threads, memory.cpu_gbps, prefetched.cpu_gbps);
  return 0;
}
