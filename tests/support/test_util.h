// Helpers shared by all tests: the seed, temporary directories, paths of the
// shared fixtures, raw file writing, and error text for assertion messages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardload::test {

// The run's random seed (printed at start; SHARDLOAD_TEST_SEED overrides).
std::uint64_t Seed();

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// $SHARDLOAD_SHARED_DIR or ../shared beside the source tree.
std::string SharedDir();

// True (after saying so on stderr) when SharedDir()/research is absent: a
// test case that needs the shared fixtures then returns at once, and the
// executable exits 77 (CTest's SKIP_RETURN_CODE: reported as skipped) if
// nothing failed. Usage: `if (SkipWithoutShared()) return;`.
bool SkipWithoutShared();
// How many test cases SkipWithoutShared() skipped in this process.
int SkippedCases();

// Writes `bytes` to `path` (creating parent directories).
void WriteFile(const std::string& path, std::string_view bytes);
std::string ReadFile(const std::string& path);
// `sha256sum PATH`'s digest (64 hex digits): an oracle independent of the
// engine's hashing.
std::string Sha256sum(const std::string& path);
// Bytes [offset, offset + size) of `path` by plain pread (an oracle independent
// of the engine); throws when the file is shorter or cannot be read.
std::vector<std::uint8_t> PreadBytes(const std::string& path, std::uint64_t offset,
                                     std::uint64_t size);

// An 8-byte little-endian length followed by `json` and then `data`: a raw
// safetensors file with exactly the given header text.
std::string RawSafetensors(std::string_view json, std::string_view data = {});

// The error of a failed Result or Status as text, "" on success: for
// REQUIRE_MESSAGE, whose message doctest also builds for passing assertions
// when asked to report them (-s).
template <typename R>
std::string ErrorText(const R& r) {
  return r ? std::string() : r.error().ToString();
}

}  // namespace shardload::test
