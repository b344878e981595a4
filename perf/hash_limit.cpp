// shardload_hash_limit: the machine's SHA-256 limit with OpenSSL's libcrypto
// (the library `shardload verify` uses): one thread hashing a 1 MiB buffer
// (cache-resident, as each of verify's 1 MiB reads is when it is hashed)
// over and over, then one thread per CPU at once, each on its own buffer.
// Prints per run the wall-clock GB/s and
// the GB per CPU-second (which a machine shared with other work does not
// bend), and the limit = single-thread rate x CPUs. Not a test.
// Usage: shardload_hash_limit [--seconds S] [--threads N]
#include <openssl/evp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kBuffer = 1ULL << 20;  // stays in L2: the hash's own rate
constexpr std::size_t kUpdate = 1ULL << 20;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Hashes its own buffer over and over for `seconds`; returns bytes hashed.
std::size_t HashFor(double seconds) {
  std::vector<unsigned char> buffer(kBuffer);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<unsigned char>(i * 131);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::size_t bytes = 0;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    for (std::size_t at = 0; at < kBuffer; at += kUpdate) {
      EVP_DigestUpdate(ctx, buffer.data() + at, kUpdate);
      bytes += kUpdate;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  return bytes;
}

struct Rate {
  double wall_gbps, cpu_gbps;
};

Rate Run(unsigned threads, double seconds) {
  std::vector<std::size_t> bytes(threads);
  double cpu0 = CpuSeconds();
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back([&, t] { bytes[t] = HashFor(seconds); });
  for (auto& t : pool) t.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = CpuSeconds() - cpu0;
  std::size_t total = 0;
  for (auto b : bytes) total += b;
  return {static_cast<double>(total) / wall / 1e9, static_cast<double>(total) / cpu / 1e9};
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
  std::printf("{\"cpus\":%u,\"single_wall_gb_per_s\":%.3f,\"single_cpu_gb_per_s\":%.3f,"
              "\"all_wall_gb_per_s\":%.3f,\"all_cpu_gb_per_s\":%.3f,"
              "\"limit_gb_per_s\":%.3f}\n",
              threads, one.wall_gbps, one.cpu_gbps, all.wall_gbps, all.cpu_gbps,
              one.cpu_gbps * threads);
  return 0;
}
