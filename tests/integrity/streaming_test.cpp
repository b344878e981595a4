// Integrity, read modes and overlap: HashFile with O_DIRECT (files off the
// alignment grid, empty, evicted from the page cache for kAuto, a file
// system refusing O_DIRECT) against `sha256sum`; LoadVerifier fed byte
// ranges out of order from other threads, ignoring ranges that landed
// elsewhere (O_DIRECT slack), hashing the memory it is given (a byte changed
// there is a mismatch) and never hanging on bytes never delivered; and
// load --verify with many small reads, buffered and O_DIRECT, failing on a
// flipped byte in the first and in the last chunk.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "integrity/file_hasher.h"
#include "integrity/loaded_hash.h"
#include "io/file_table.h"
#include "shardload/loader.h"
#include "shardload/verify.h"
#include "shardload/writer.h"
#include "support/test_util.h"

namespace shardload {
namespace {

// Writes, syncs and drops FILE's pages from the page cache.
void Evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::fdatasync(fd) == 0);
  REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  ::close(fd);
}

// True when the file system of the file at PATH takes O_DIRECT.
bool DirectWorks(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::string RandomBytes(std::size_t size, std::mt19937_64& rng) {
  std::string bytes(size, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

TEST_CASE("HashFile with O_DIRECT equals sha256sum, off the alignment grid and empty") {
  test::TempDir dir;
  std::mt19937_64 rng(test::Seed());
  test::WriteFile(dir / "probe", "x");
  if (!DirectWorks(dir / "probe")) {
    MESSAGE("the temporary directory refuses O_DIRECT: direct cases not run");
    return;
  }
  for (std::uint64_t size : {0ULL, 1ULL, 511ULL, 512ULL, 4095ULL, 4097ULL, 65536ULL * 3 + 100,
                             (1ULL << 20) + 3}) {
    std::string path = dir / ("f" + std::to_string(size));
    test::WriteFile(path, RandomBytes(size, rng));
    const std::string want = test::Sha256sum(path);
    for (std::uint64_t read_size : {4096ULL, 65536ULL}) {
      for (unsigned depth : {1u, 3u}) {
        CAPTURE(size);
        CAPTURE(read_size);
        CAPTURE(depth);
        auto hash = HashFile(path, HashOptions{read_size, depth, size, IoMode::kDirect});
        REQUIRE_MESSAGE(hash, test::ErrorText(hash));
        CHECK(hash->sha256 == want);
        CHECK(hash->bytes == size);
        CHECK(hash->bytes_direct == size);
      }
    }
    // kAuto: this file was just written (cached): hashed from a mapping of
    // the page cache; evicted: O_DIRECT.
    auto warm = HashFile(path, HashOptions{65536, 2, std::nullopt, IoMode::kAuto});
    REQUIRE(warm);
    CHECK(warm->sha256 == want);
    CHECK(warm->bytes_direct == 0);
    CHECK(warm->mapped);
    Evict(path);
    auto cold = HashFile(path, HashOptions{65536, 2, std::nullopt, IoMode::kAuto});
    REQUIRE(cold);
    CHECK(cold->sha256 == want);
    CHECK(cold->bytes_direct == size);
    CHECK(cold->mapped == (size == 0));  // an empty file counts as cached
  }
  // The header's size is checked before any read, O_DIRECT or not.
  auto wrong = HashFile(dir / "f4097", HashOptions{4096, 2, 4096, IoMode::kDirect});
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == ErrorCode::kTruncated);
  CHECK(wrong.error().path == dir / "f4097");
}

TEST_CASE("HashFile on a file system refusing O_DIRECT: kAuto reads buffered, kDirect fails") {
  test::TempDir dir;
  std::mt19937_64 rng(test::Seed());
  const std::string path = dir / "f";
  test::WriteFile(path, RandomBytes(100'003, rng));
  ScopedRefuseDirect refuse;
  Evict(path);  // kAuto would pick O_DIRECT
  auto hash = HashFile(path, HashOptions{4096, 2, std::nullopt, IoMode::kAuto});
  REQUIRE_MESSAGE(hash, test::ErrorText(hash));
  CHECK(hash->sha256 == test::Sha256sum(path));
  CHECK(hash->bytes_direct == 0);
  CHECK_FALSE(hash->mapped);  // not cached: copied by read(), with readahead
  auto direct = HashFile(path, HashOptions{4096, 2, std::nullopt, IoMode::kDirect});
  REQUIRE_FALSE(direct);
  CHECK(direct.error().code == ErrorCode::kUnsupported);
  CHECK(direct.error().path == path);
}

// A checkpoint of 3 shards with 4 random tensors each (sizes off any grid).
class Shards {
 public:
  explicit Shards(std::uint64_t tensor_bytes = 70'001) {
    std::mt19937_64 rng(test::Seed());
    std::vector<std::vector<std::byte>> data;
    std::vector<TensorData> tensors;
    for (int i = 0; i < 12; ++i) {
      data.emplace_back(static_cast<std::size_t>(tensor_bytes + 131 * i));
      for (auto& b : data.back()) b = static_cast<std::byte>(rng());
    }
    for (int i = 0; i < 12; ++i) {
      tensors.push_back(TensorData{"t." + std::to_string(i), DType::kU8, {data[i].size()},
                                   data[i], {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 4 * tensor_bytes + 4096;
    REQUIRE(WriteCheckpoint(dir_.path(), tensors, options));
    auto ckpt = Checkpoint::Open(dir_.path());
    REQUIRE(ckpt);
    REQUIRE(ckpt->shards().size() >= 3);
    std::string text;
    for (const ShardInfo& s : ckpt->shards()) text += test::Sha256sum(s.path) + "  " + s.name + "\n";
    manifest_ = dir_ / "manifest.sha256";
    test::WriteFile(manifest_, text);
    checkpoint_.emplace(std::move(*ckpt));
  }
  const std::string& path() const { return dir_.path(); }
  const std::string& manifest() const { return manifest_; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }

  // Flips a bit of byte `offset` of shard `shard` (negative: from its end).
  void Flip(std::size_t shard, std::int64_t offset) const {
    const ShardInfo& s = checkpoint_->shards()[shard];
    off_t at = offset >= 0 ? offset : static_cast<off_t>(s.file_size) + offset;
    int fd = ::open(s.path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    unsigned char b = 0;
    REQUIRE(::pread(fd, &b, 1, at) == 1);
    b ^= 0x04;
    REQUIRE(::pwrite(fd, &b, 1, at) == 1);
    ::close(fd);
  }

 private:
  test::TempDir dir_;
  std::string manifest_;
  std::optional<Checkpoint> checkpoint_;
};

// Every tensor's file bytes, read by plain pread, in memory of our own.
struct Copies {
  explicit Copies(const Checkpoint& ckpt) {
    for (const TensorInfo& t : ckpt.tensors()) {
      bytes.push_back(test::PreadBytes(ckpt.shards()[t.shard].path, t.offset, t.size));
    }
    for (std::size_t i = 0; i < ckpt.tensors().size(); ++i) {
      loaded.push_back({&ckpt.tensors()[i], reinterpret_cast<const std::byte*>(bytes[i].data())});
    }
  }
  std::vector<std::vector<std::uint8_t>> bytes;
  std::vector<LoadedBytes> loaded;
};

// A tensor's file range cut in pieces of 1-5000 bytes.
struct Piece {
  std::uint32_t file;
  std::uint64_t lo, hi;
  const std::byte* at;
};

std::vector<Piece> Pieces(const std::vector<LoadedBytes>& loaded, std::mt19937_64& rng) {
  std::vector<Piece> pieces;
  for (const LoadedBytes& b : loaded) {
    for (std::uint64_t x = 0; x < b.tensor->size;) {
      std::uint64_t n = std::min<std::uint64_t>(1 + rng() % 5000, b.tensor->size - x);
      pieces.push_back({b.tensor->shard, b.tensor->offset + x, b.tensor->offset + x + n,
                        b.data + x});
      x += n;
    }
  }
  return pieces;
}

// Delivers PIECES from 2 threads, each in its own shuffled order.
void DeliverFromThreads(LoadVerifier& v, std::vector<Piece> pieces, std::mt19937_64& rng) {
  std::shuffle(pieces.begin(), pieces.end(), rng);
  const std::size_t half = pieces.size() / 2;
  std::thread other([&] {
    for (std::size_t i = half; i < pieces.size(); ++i) {
      v.Delivered(pieces[i].file, pieces[i].lo, pieces[i].hi, pieces[i].at);
    }
  });
  for (std::size_t i = 0; i < half; ++i) {
    v.Delivered(pieces[i].file, pieces[i].lo, pieces[i].hi, pieces[i].at);
  }
  other.join();
}

TEST_CASE("LoadVerifier: bytes delivered out of order from two threads are hashed from memory") {
  Shards s;
  Copies c(s.checkpoint());
  std::mt19937_64 rng(test::Seed());
  auto v = LoadVerifier::Start(s.checkpoint(), s.manifest(), c.loaded, 2);
  REQUIRE_MESSAGE(v, test::ErrorText(v));
  DeliverFromThreads(**v, Pieces(c.loaded, rng), rng);
  auto check = (*v)->Finish();
  REQUIRE_MESSAGE(check, test::ErrorText(check));
  CHECK(check->from_memory == s.checkpoint().shards().size());
  CHECK(check->from_storage == 0);
}

TEST_CASE("LoadVerifier: a byte changed in memory, first or last, is that shard's mismatch") {
  Shards s;
  for (bool last : {false, true}) {
    CAPTURE(last);
    Copies c(s.checkpoint());
    std::mt19937_64 rng(test::Seed());
    // The first tensor (by offset) of shard 1, or the last one.
    const LoadedBytes* victim = nullptr;
    std::size_t index = 0;
    for (std::size_t i = 0; i < c.loaded.size(); ++i) {
      const TensorInfo* t = c.loaded[i].tensor;
      if (t->shard != 1) continue;
      if (victim == nullptr || (last ? t->offset > victim->tensor->offset
                                     : t->offset < victim->tensor->offset)) {
        victim = &c.loaded[i];
        index = i;
      }
    }
    REQUIRE(victim != nullptr);
    c.bytes[index][last ? c.bytes[index].size() - 1 : 0] ^= 0x80;
    auto v = LoadVerifier::Start(s.checkpoint(), s.manifest(), c.loaded, 2);
    REQUIRE(v);
    DeliverFromThreads(**v, Pieces(c.loaded, rng), rng);
    auto check = (*v)->Finish();
    REQUIRE_FALSE(check);
    CHECK(check.error().code == ErrorCode::kChecksumMismatch);
    CHECK(check.error().path == s.checkpoint().shards()[1].path);
  }
}

TEST_CASE("LoadVerifier: bytes that landed elsewhere (slack) do not count; no hang") {
  Shards s;
  Copies c(s.checkpoint());
  std::vector<std::byte> window(1 << 20);
  auto v = LoadVerifier::Start(s.checkpoint(), s.manifest(), c.loaded, 2);
  REQUIRE(v);
  // Every shard's whole range reported, but at an address of a window.
  for (std::uint32_t f = 0; f < s.checkpoint().shards().size(); ++f) {
    (*v)->Delivered(f, 0, s.checkpoint().shards()[f].file_size, window.data());
  }
  auto check = (*v)->Finish();
  REQUIRE_FALSE(check);
  CHECK(check.error().code == ErrorCode::kInternal);
  CHECK(check.error().detail.find("never reported in place") != std::string::npos);
  // Dropped while its threads wait for bytes: returns (the load failed).
  auto dropped = LoadVerifier::Start(s.checkpoint(), s.manifest(), c.loaded, 2);
  REQUIRE(dropped);
  (*dropped)->Delivered(0, c.loaded[0].tensor->offset, c.loaded[0].tensor->offset + 1,
                        c.loaded[0].data);
}

Result<LoadedCheckpoint> LoadVerified(const Shards& s, IoMode mode) {
  LoadOptions options;
  options.verify = s.manifest();
  options.threads = 2;
  options.chunk_size = 8192;  // many reads, so the hash runs alongside them
  options.mode = mode;
  auto loader = Loader::Open(s.path(), options);
  if (!loader) return std::move(loader).error();
  return loader->Load();
}

TEST_CASE("load --verify, many small reads: hashed from memory while loading") {
  Shards s(300'007);
  std::vector<IoMode> modes = {IoMode::kBuffered, IoMode::kAuto};
  if (DirectWorks(s.checkpoint().shards()[0].path)) modes.push_back(IoMode::kDirect);
  for (IoMode mode : modes) {
    CAPTURE(IoModeName(mode));
    auto loaded = LoadVerified(s, mode);
    REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
    CHECK(loaded->stats().verified == std::to_string(s.checkpoint().shards().size()) +
                                          " files verified from the loaded bytes, 0 by "
                                          "reading them again");
    if (mode == IoMode::kDirect) CHECK(loaded->stats().bytes_direct > 0);
  }
}

TEST_CASE("load --verify, many small reads: a flip in the first or the last chunk fails") {
  for (std::int64_t at : {std::int64_t{-1}, std::int64_t{0}}) {
    Shards s(300'007);
    // The first tensor byte of shard 2 (just after its header), or its last byte.
    const std::int64_t offset =
        at < 0 ? -1 : static_cast<std::int64_t>(s.checkpoint().shards()[2].data_offset);
    s.Flip(2, offset);
    std::vector<IoMode> modes = {IoMode::kBuffered};
    if (DirectWorks(s.checkpoint().shards()[0].path)) modes.push_back(IoMode::kDirect);
    for (IoMode mode : modes) {
      CAPTURE(offset);
      CAPTURE(IoModeName(mode));
      auto loaded = LoadVerified(s, mode);
      REQUIRE_FALSE(loaded);
      CHECK(loaded.error().code == ErrorCode::kChecksumMismatch);
      CHECK(loaded.error().path == s.checkpoint().shards()[2].path);
    }
  }
}

}  // namespace
}  // namespace shardload
