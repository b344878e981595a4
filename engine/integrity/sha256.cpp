// SHA-256 through libcrypto's EVP interface (SHA-NI when the CPU has it).
// Thread-compatible: one Sha256 per thread.
#include "integrity/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <new>

namespace shardload {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw std::bad_alloc();
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(std::span<const std::byte> bytes) {
  if (!bytes.empty()) EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

void Sha256::UpdateFromMemory(std::span<const std::byte> bytes) {
  const std::byte* data = bytes.data();
  const std::size_t size = bytes.size();
  for (std::size_t at = 0; at < size; at += kMemoryPiece) {
    const std::size_t end = std::min(size, at + kMemoryAhead + kMemoryPiece);
    for (std::size_t p = at + kMemoryAhead; p < end; p += 64) __builtin_prefetch(data + p);
    Update(bytes.subspan(at, std::min(kMemoryPiece, size - at)));
  }
}

std::string Sha256::FinalHex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string LowerHex(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace shardload
