// Sha256: an incremental SHA-256 over OpenSSL's libcrypto (which uses the
// CPU's SHA extensions when present), and hex digest helpers.
// Thread-compatible: one Sha256 per thread; the free functions are thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace shardload {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const std::byte> bytes);
  // Update for bytes that are in memory but likely not in cache (a page-cache
  // mapping, a DMA target, a loaded tensor): hashed in kMemoryPiece updates,
  // each first prefetching the piece kMemoryAhead bytes further on, so the
  // loads stay a few pieces ahead of the hash without a burst of prefetches
  // that fills the miss buffers. Measured on the 2-vCPU VM (Xeon, SHA-NI),
  // hashing a cached 1.98 GB file from a mapping: 1.78-1.85 GB per
  // CPU-second, against 1.55 with 16 KiB pieces each prefetching the next
  // whole, 1.37 without prefetch, 1.97 for bytes in L2.
  void UpdateFromMemory(std::span<const std::byte> bytes);
  static constexpr std::size_t kMemoryPiece = 1 << 10;
  static constexpr std::size_t kMemoryAhead = 8 << 10;
  // The digest as 64 lowercase hex digits; the object must not be used after.
  std::string FinalHex();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

// True when `text` is 64 hex digits (either case).
bool IsSha256Hex(std::string_view text);
// Lowercase copy of a hex digest.
std::string LowerHex(std::string_view text);

}  // namespace shardload
