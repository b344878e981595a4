// Integrity: the SHA-256 of every file of a checkpoint, checked against a
// manifest (`sha256sum` output or a JSON object name -> hex digest; the
// Hugging Face Hub's LFS object ids are these digests, docs/cli.md).
// Thread-safe: Verify may run concurrently; its results are plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardload/error.h"
#include "shardload/stats.h"

namespace shardload {

enum class FileCheck {
  kListed,    // no manifest: digest computed, nothing to compare
  kOk,        // digest equals the manifest's
  kMismatch,  // digest differs from the manifest's
  kMissing,   // in the manifest, but no such file beside the checkpoint
  kExtra,     // a shard of the checkpoint that the manifest does not list
};

// "LISTED", "OK", "MISMATCH", "MISSING", "EXTRA".
const char* FileCheckName(FileCheck check);

struct FileVerdict {
  std::string name;      // relative to the checkpoint's directory
  std::string path;      // path read (empty when missing)
  std::uint64_t bytes = 0;
  std::string sha256;    // computed (empty when missing)
  std::string expected;  // from the manifest (empty when none)
  FileCheck check = FileCheck::kListed;
  std::uint64_t bytes_direct = 0;  // of `bytes`, read with O_DIRECT
  std::uint64_t bytes_mapped = 0;  // of `bytes`, hashed from a mapping (not read)
};

// How a file read through the page cache is hashed.
enum class CachedRead {
  kAuto,    // from a mapping of it when at least half of it is cached, else copied
  kMapped,  // from a mapping (pages not cached are read in as it is hashed)
  kCopied,  // copied by read() into a buffer, `read_size` bytes at a time
};

struct VerifyOptions {
  std::string manifest;                   // path; empty: only compute digests
  unsigned threads = 0;                   // files hashed at once; 0: one per online CPU
  std::uint64_t read_size = 1ULL << 20;   // bytes per read (hashed while still in cache)
  unsigned depth = 4;                     // O_DIRECT reads in flight per file (buffered: 1)
  // kAuto, per file: through the page cache when at least half of it is
  // cached, else O_DIRECT where the file system takes it; kDirect: O_DIRECT
  // or an error; kBuffered: through the page cache.
  IoMode mode = IoMode::kAuto;
  // Files read through the page cache (kBuffered, or kAuto's cached ones):
  // hashed straight from the page cache's pages (no kernel copy) or copied.
  CachedRead cached = CachedRead::kAuto;
};

struct VerifyReport {
  std::vector<FileVerdict> files;  // sorted by name
  std::uint64_t bytes = 0;         // bytes hashed
  std::uint64_t bytes_direct = 0;  // of those, read with O_DIRECT
  std::uint64_t bytes_mapped = 0;  // of those, hashed from a mapping of the page cache
  double seconds = 0;              // wall time of the hashing
  unsigned threads = 0;
  bool ok() const;                 // every file kOk or kListed
};

// Resolves PATH (Checkpoint::Open: every header validated, every tensor's
// bytes inside its file), then hashes every shard, and every other file the
// manifest names that exists beside the checkpoint, files in parallel.
// Errors: Checkpoint::Open's, a manifest's (kBadManifest, kIoError), a
// read's (kIoError, kTruncated when a shard no longer has the size its
// header gives). Mismatches are verdicts, not errors.
Result<VerifyReport> Verify(const std::string& path, const VerifyOptions& options = {});

}  // namespace shardload
