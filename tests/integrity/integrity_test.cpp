// Integrity: manifests (sha256sum text and JSON, and their errors), HashFile
// and Verify against the `sha256sum` program (the oracle: coreutils, run as a
// separate process), hashed from a mapping and from read() copies, a file
// truncated under the mapping while it is hashed, a cached file on an overlay
// mount hashed from its mapping (the residency answer of auto loads), a flipped byte in the
// middle of a shard, missing and extra files, and LoadOptions::verify (whole loads hashed from memory,
// selections and rank slices re-read, a mismatch fails naming the file).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <iterator>
#include <optional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "integrity/file_hasher.h"
#include "integrity/manifest.h"
#include "integrity/sha256.h"
#include "shardload/loader.h"
#include "shardload/verify.h"
#include "shardload/writer.h"
#include "support/overlay_mount.h"
#include "support/test_util.h"

namespace shardload {
namespace {

// A checkpoint of several shards with random tensor bytes, and its manifest.
class Fixture {
 public:
  Fixture() {
    std::mt19937_64 rng(test::Seed());
    std::vector<TensorData> tensors;
    for (int i = 0; i < 12; ++i) {
      data_.emplace_back(static_cast<std::size_t>(40'000 + 997 * i));
      for (auto& b : data_.back()) b = static_cast<std::byte>(rng());
    }
    for (int i = 0; i < 12; ++i) {
      tensors.push_back(TensorData{"layers." + std::to_string(i) + ".w", DType::kU8,
                                   {data_[i].size()}, data_[i], {}});
    }
    CheckpointWriteOptions options;
    options.max_shard_size = 100'000;
    REQUIRE(WriteCheckpoint(dir_.path(), tensors, options));
    auto ckpt = Checkpoint::Open(dir_.path());
    REQUIRE(ckpt);
    REQUIRE(ckpt->shards().size() >= 3);
    for (const ShardInfo& s : ckpt->shards()) shards_[s.name] = s.path;
  }

  const std::string& path() const { return dir_.path(); }
  std::string operator/(const std::string& name) const { return dir_ / name; }
  const std::map<std::string, std::string>& shards() const { return shards_; }

  // sha256sum-style manifest of the shards (computed by sha256sum), plus `extra` lines.
  std::string WriteManifest(const std::string& extra = "", const std::string& skip = "") const {
    std::string text;
    for (const auto& [name, path] : shards_) {
      if (name != skip) text += test::Sha256sum(path) + "  " + name + "\n";
    }
    text += extra;
    std::string file = dir_ / "manifest.sha256";
    test::WriteFile(file, text);
    return file;
  }

  // Flips one bit of the byte in the middle of shard `name`; KEEP_MTIME:
  // as bit rot would, leaving its modification time as it was (a load then
  // does not see the shard as changed since the checkpoint was opened).
  void FlipMiddleByte(const std::string& name, bool keep_mtime = false) const {
    const std::string& path = shards_.at(name);
    int fd = ::open(path.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    struct stat before {};
    REQUIRE(::fstat(fd, &before) == 0);
    off_t middle = ::lseek(fd, 0, SEEK_END) / 2;
    unsigned char b = 0;
    REQUIRE(::pread(fd, &b, 1, middle) == 1);
    b ^= 0x10;
    REQUIRE(::pwrite(fd, &b, 1, middle) == 1);
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    if (keep_mtime) REQUIRE(::futimens(fd, times) == 0);
    ::close(fd);
  }

 private:
  test::TempDir dir_;
  std::vector<std::vector<std::byte>> data_;
  std::map<std::string, std::string> shards_;
};

// --- manifests ---------------------------------------------------------------

const std::string kA(64, 'a');
const std::string kB = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";

TEST_CASE("sha256sum manifests: text and binary mode, escapes, CRLF, blank lines") {
  std::string text = kA + "  a.safetensors\r\n\n" + kB + " *./dir/b.safetensors\n\\" + kA +
                     "  c\\\\d\\nname\n";
  auto m = ParseManifest(text, "m.txt");
  REQUIRE_MESSAGE(m, test::ErrorText(m));
  REQUIRE(m->entries.size() == 3);
  REQUIRE(m->Find("a.safetensors") != nullptr);
  CHECK(*m->Find("a.safetensors") == kA);
  REQUIRE(m->Find("dir/b.safetensors") != nullptr);
  CHECK(*m->Find("dir/b.safetensors") == LowerHex(kB));
  CHECK(m->Find("c\\d\nname") != nullptr);
  CHECK(m->Find("missing") == nullptr);
}

TEST_CASE("JSON manifests: an object of name -> digest") {
  auto m = ParseManifest(" {\"x.safetensors\": \"" + kB + "\", \"y\": \"" + kA + "\"}", "m.json");
  REQUIRE_MESSAGE(m, test::ErrorText(m));
  REQUIRE(m->entries.size() == 2);
  CHECK(*m->Find("x.safetensors") == LowerHex(kB));
}

TEST_CASE("malformed manifests are refused naming the manifest and the problem") {
  struct Case {
    std::string text, needle;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"   \n", "empty"},
      {kA + " a\n", "line 1"},                       // one space
      {kA.substr(1) + "  a\n", "line 1"},            // 63 digits
      {"\n" + std::string(63, 'a') + "g  a\n", "line 2"},  // not hex
      {kA + "  \n", "line 1"},                       // no name
      {kA + "  a\n" + kB + "  a\n", "listed twice"},
      {"\\" + kA + "  bad\\q\n", "escape"},
      {"{\"a\": 1}", "not a SHA-256"},
      {"{\"a\": \"abc\"}", "not a SHA-256"},
      {"{\"a\": \"" + kA + "\"", "not valid JSON"},
      {"[\"" + kA + "\"]", "line 1"},
      {"{\"a\": \"" + kA + "\", \"a\": \"" + kB + "\"}", "listed twice"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto m = ParseManifest(c.text, "m.txt");
    REQUIRE_FALSE(m);
    CHECK(m.error().code == ErrorCode::kBadManifest);
    CHECK(m.error().path == "m.txt");
    CHECK_MESSAGE(m.error().detail.find(c.needle) != std::string::npos, m.error().detail);
  }
  auto missing = ReadManifest("/nonexistent/manifest");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kIoError);
}

// --- HashFile ------------------------------------------------------------------

TEST_CASE("HashFile equals sha256sum for sizes around the read size, any depth, mapped or copied") {
  test::TempDir dir;
  std::mt19937_64 rng(test::Seed());
  for (std::uint64_t size : {0ULL, 1ULL, 4095ULL, 4096ULL, 12288ULL, 12289ULL, 100'000ULL}) {
    std::string bytes(size, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    std::string path = dir / ("f" + std::to_string(size));
    test::WriteFile(path, bytes);
    std::string want = test::Sha256sum(path);
    for (unsigned depth : {1u, 2u, 3u, 8u}) {
      CAPTURE(size);
      CAPTURE(depth);
      HashOptions o{4096, depth, std::nullopt, IoMode::kBuffered, depth, CachedRead::kCopied};
      auto hash = HashFile(path, o);
      REQUIRE_MESSAGE(hash, test::ErrorText(hash));
      CHECK(hash->sha256 == want);
      CHECK(hash->bytes == size);
      CHECK_FALSE(hash->mapped);
    }
    // From a mapping: windows of one page, of 2.44 pages (rounded up to 3),
    // and larger than the file.
    for (std::uint64_t window : {4096ULL, 10'000ULL, 1ULL << 20}) {
      CAPTURE(size);
      CAPTURE(window);
      HashOptions o{4096, 1, size, IoMode::kBuffered, 1, CachedRead::kMapped, window};
      auto hash = HashFile(path, o);
      REQUIRE_MESSAGE(hash, test::ErrorText(hash));
      CHECK(hash->sha256 == want);
      CHECK(hash->bytes == size);
      CHECK(hash->mapped);
      CHECK(hash->bytes_direct == 0);
    }
    // kAuto: the file was just written, so it is in the page cache: mapped.
    auto automatic = HashFile(path, HashOptions{4096, 1, size, IoMode::kBuffered});
    REQUIRE_MESSAGE(automatic, test::ErrorText(automatic));
    CHECK(automatic->sha256 == want);
    CHECK(automatic->mapped);
  }
  for (CachedRead cached : {CachedRead::kMapped, CachedRead::kCopied}) {
    HashOptions o{4096, 2, 100'001, IoMode::kBuffered, 1, cached};
    auto wrong = HashFile(dir / "f100000", o);
    REQUIRE_FALSE(wrong);
    CHECK(wrong.error().code == ErrorCode::kTruncated);
  }
  auto absent = HashFile(dir / "nope");
  REQUIRE_FALSE(absent);
  CHECK(absent.error().code == ErrorCode::kIoError);
}

TEST_CASE("HashFile on an overlay mount: a cached file is hashed from its mapping") {
  test::OverlayMount overlay;
  if (!overlay.ok()) {
    MESSAGE(overlay.reason() << ": skipped");
    return;
  }
  std::mt19937_64 rng(test::Seed() + 7);
  std::string bytes(3 << 20, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  const std::string path = overlay / "shard.bin";
  test::WriteFile(path, bytes);
  const std::string want = test::Sha256sum(path);  // and now wholly cached
  HashOptions o;
  o.mode = IoMode::kAuto;
  auto hash = HashFile(path, o);
  REQUIRE_MESSAGE(hash, test::ErrorText(hash));
  CHECK(hash->sha256 == want);
  CHECK(hash->mapped);
  CHECK(hash->bytes_direct == 0);
}

TEST_CASE("HashFile from a mapping: a file truncated while it is hashed is kTruncated") {
  test::TempDir dir;
  std::mt19937_64 rng(test::Seed());
  constexpr std::uint64_t kWindow = 64 << 10;
  constexpr std::uint64_t kSize = 5 * kWindow + 123;
  const std::string intact = dir / "intact";
  std::string bytes(kSize, '\0');
  for (auto& c : bytes) c = static_cast<char>(rng());
  test::WriteFile(intact, bytes);
  const std::string want = test::Sha256sum(intact);
  struct Case {
    std::uint64_t window;  // truncated once this window is populated
    std::uint64_t keep;    // bytes left
  };
  // Inside the window about to be hashed, to nothing, before it, and on a
  // page boundary inside it (its pages were populated, then taken away).
  for (Case c : {Case{2, 2 * kWindow + 5000}, Case{0, 0}, Case{3, kWindow + 1},
                 Case{4, 4 * kWindow + 4096}}) {
    CAPTURE(c.window);
    CAPTURE(c.keep);
    const std::string path = dir / "victim";
    test::WriteFile(path, bytes);
    int truncated = -1;
    HashOptions o{4096, 1, kSize, IoMode::kBuffered, 1, CachedRead::kMapped, kWindow};
    o.before_window = [&](std::uint64_t at) {
      if (at == c.window * kWindow) {
        truncated = ::truncate(path.c_str(), static_cast<off_t>(c.keep));
      }
    };
    auto hash = HashFile(path, o);
    REQUIRE(truncated == 0);
    REQUIRE_FALSE_MESSAGE(hash, "a file truncated under the mapping hashed as " << hash->sha256);
    const Error& e = hash.error();
    INFO(e.ToString());
    CHECK(e.code == ErrorCode::kTruncated);
    CHECK(e.path == path);
    CHECK(e.detail.find("ended at byte " + std::to_string(c.keep)) != std::string::npos);
    // Where the hash found no page: past the new end, before the old one.
    REQUIRE(e.offset.has_value());
    CHECK(*e.offset >= c.keep);
    CHECK(*e.offset < kSize);
    // The thread hashes from a mapping on as before (the guard was disarmed).
    auto again = HashFile(intact, HashOptions{4096, 1, kSize, IoMode::kBuffered, 1,
                                              CachedRead::kMapped, kWindow});
    REQUIRE_MESSAGE(again, test::ErrorText(again));
    CHECK(again->sha256 == want);
  }
}

// --- Verify --------------------------------------------------------------------

TEST_CASE("verify without a manifest lists sha256sum's digests, mapped or copied") {
  Fixture f;
  for (CachedRead cached : {CachedRead::kAuto, CachedRead::kMapped, CachedRead::kCopied}) {
    CAPTURE(static_cast<int>(cached));
    VerifyOptions options;
    options.read_size = 8192;
    options.cached = cached;
    auto report = Verify(f.path(), options);
    REQUIRE_MESSAGE(report, test::ErrorText(report));
    CHECK(report->ok());
    // The shards were just written: kAuto finds them cached and maps them.
    CHECK(report->bytes_mapped == (cached == CachedRead::kCopied ? 0 : report->bytes));
    REQUIRE(report->files.size() == f.shards().size());
    for (const FileVerdict& v : report->files) {
      CAPTURE(v.name);
      CHECK(v.check == FileCheck::kListed);
      CHECK(v.sha256 == test::Sha256sum(f.shards().at(v.name)));
    }
  }
}

TEST_CASE("verify with a matching manifest: every shard OK, other listed files hashed too") {
  Fixture f;
  test::WriteFile(f / "config.json", "{\"hidden_size\": 4}\n");
  std::string config = test::Sha256sum(f / "config.json");
  VerifyOptions options;
  options.manifest = f.WriteManifest(config + "  config.json\n");
  options.threads = 2;
  auto report = Verify(f.path(), options);
  REQUIRE_MESSAGE(report, test::ErrorText(report));
  CHECK(report->ok());
  CHECK(report->files.size() == f.shards().size() + 1);
  for (const FileVerdict& v : report->files) CHECK_MESSAGE(v.check == FileCheck::kOk, v.name);
}

TEST_CASE("a flipped byte in the middle of a shard is a MISMATCH of that file only") {
  Fixture f;
  VerifyOptions options;
  options.manifest = f.WriteManifest();
  std::string victim = std::next(f.shards().begin())->first;
  f.FlipMiddleByte(victim);
  for (CachedRead cached : {CachedRead::kMapped, CachedRead::kCopied}) {
    CAPTURE(static_cast<int>(cached));
    options.cached = cached;
    auto report = Verify(f.path(), options);
    REQUIRE_MESSAGE(report, test::ErrorText(report));
    CHECK_FALSE(report->ok());
    CHECK(report->bytes_mapped == (cached == CachedRead::kMapped ? report->bytes : 0));
    for (const FileVerdict& v : report->files) {
      CAPTURE(v.name);
      CHECK(v.check == (v.name == victim ? FileCheck::kMismatch : FileCheck::kOk));
      if (v.name == victim) CHECK(v.sha256 == test::Sha256sum(f.shards().at(victim)));
    }
  }
}

TEST_CASE("MISSING: listed but absent; EXTRA: a shard the manifest lacks") {
  Fixture f;
  std::string skipped = f.shards().begin()->first;
  VerifyOptions options;
  options.manifest = f.WriteManifest(kA + "  tokenizer.json\n" + kA + "  ../outside\n", skipped);
  for (CachedRead cached : {CachedRead::kMapped, CachedRead::kCopied}) {
    CAPTURE(static_cast<int>(cached));
    options.cached = cached;
    auto report = Verify(f.path(), options);
    REQUIRE_MESSAGE(report, test::ErrorText(report));
    CHECK_FALSE(report->ok());
    std::map<std::string, FileCheck> checks;
    for (const FileVerdict& v : report->files) checks[v.name] = v.check;
    CHECK(checks.at("tokenizer.json") == FileCheck::kMissing);
    CHECK(checks.at("../outside") == FileCheck::kMissing);
    CHECK(checks.at(skipped) == FileCheck::kExtra);
    CHECK(checks.size() == f.shards().size() + 2);
  }
}

TEST_CASE("a 100,000-line manifest: every shard OK, every other name MISSING, one present file OK") {
  Fixture f;
  test::WriteFile(f / "present.txt", "here\n");
  std::string extra = test::Sha256sum(f / "present.txt") + "  present.txt\n";
  constexpr int kLines = 100'000;
  extra.reserve(extra.size() + kLines * 80);
  for (int i = 0; i < kLines; ++i) extra += kA + "  absent/" + std::to_string(i) + ".bin\n";
  VerifyOptions options;
  options.manifest = f.WriteManifest(extra);
  options.threads = 2;
  auto report = Verify(f.path(), options);
  REQUIRE_MESSAGE(report, test::ErrorText(report));
  CHECK_FALSE(report->ok());
  REQUIRE(report->files.size() == f.shards().size() + 1 + kLines);
  std::size_t ok = 0, missing = 0;
  for (const FileVerdict& v : report->files) {
    if (v.check == FileCheck::kOk) {
      ++ok;
      CHECK_MESSAGE((f.shards().count(v.name) == 1 || v.name == "present.txt"), v.name);
    } else {
      ++missing;
      CHECK(v.check == FileCheck::kMissing);
      CHECK(v.name.rfind("absent/", 0) == 0);
    }
  }
  CHECK(ok == f.shards().size() + 1);
  CHECK(missing == kLines);
}

TEST_CASE("verify reports a bad manifest and a bad checkpoint as errors") {
  Fixture f;
  test::WriteFile(f / "bad.sha256", "nonsense\n");
  VerifyOptions options;
  options.manifest = f / "bad.sha256";
  auto report = Verify(f.path(), options);
  REQUIRE_FALSE(report);
  CHECK(report.error().code == ErrorCode::kBadManifest);
  auto nothing = Verify(f / "nonexistent");
  REQUIRE_FALSE(nothing);
}

// --- load --verify ---------------------------------------------------------------

Result<LoadedCheckpoint> VerifiedLoad(const Fixture& f, const std::string& manifest,
                                      const Selection& selection = {},
                                      std::optional<DType> dtype = std::nullopt) {
  LoadOptions options;
  options.verify = manifest;
  options.dtype = dtype;
  options.threads = 2;
  auto loader = Loader::Open(f.path(), options);
  if (!loader) return std::move(loader).error();
  return loader->Load(selection);
}

TEST_CASE("load --verify: a whole load is checked from the loaded bytes") {
  Fixture f;
  auto loaded = VerifiedLoad(f, f.WriteManifest());
  REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
  CHECK(loaded->stats().verified.find(std::to_string(f.shards().size()) +
                                      " files verified from the loaded bytes, 0 by reading") == 0);
}

TEST_CASE("load --verify: a flipped byte fails the load naming the file; nothing returned") {
  Fixture f;
  std::string manifest = f.WriteManifest();
  std::string victim = std::prev(f.shards().end())->first;
  f.FlipMiddleByte(victim);
  for (bool convert : {false, true}) {
    CAPTURE(convert);
    auto loaded = VerifiedLoad(f, manifest, {},
                               convert ? std::optional<DType>(DType::kF32) : std::nullopt);
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().code == ErrorCode::kChecksumMismatch);
    CHECK(loaded.error().path == f.shards().at(victim));
    CHECK(loaded.error().detail.find(test::Sha256sum(f.shards().at(victim))) != std::string::npos);
  }
}

TEST_CASE("load --verify: a selection re-reads only the shards it touches") {
  Fixture f;
  std::string manifest = f.WriteManifest();
  Selection one;
  one.names = {"layers.0.w"};
  auto loaded = VerifiedLoad(f, manifest, one);
  REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
  CHECK(loaded->stats().verified == "0 files verified from the loaded bytes, 1 by reading them again");
  // A corrupt shard the selection does not read is not checked.
  auto ckpt = Checkpoint::Open(f.path());
  REQUIRE(ckpt);
  std::string untouched = ckpt->shards()[ckpt->Find("layers.11.w")->shard].name;
  REQUIRE(untouched != ckpt->shards()[ckpt->Find("layers.0.w")->shard].name);
  f.FlipMiddleByte(untouched);
  CHECK(VerifiedLoad(f, manifest, one));
  Selection last;
  last.names = {"layers.11.w"};
  auto bad = VerifiedLoad(f, manifest, last);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kChecksumMismatch);
}

TEST_CASE("load --verify: a manifest without a shard read is refused") {
  Fixture f;
  std::string skipped = f.shards().begin()->first;
  auto loaded = VerifiedLoad(f, f.WriteManifest("", skipped));
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == ErrorCode::kBadManifest);
  CHECK(loaded.error().detail.find(skipped) != std::string::npos);
}

// Rank 1 of 2 under a one-rule plan, verified against MANIFEST.
Result<LoadedCheckpoint> VerifiedRankLoad(const Fixture& f, const std::string& split,
                                          const std::string& manifest) {
  test::WriteFile(f / "plan.json", R"({"tp_plan_version": 1, "rules": [{"match": "**", "split": ")" +
                                       split + R"("}], "uneven": "chunk"})");
  LoadOptions options;
  options.verify = manifest;
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader);
  return loader->Load({}, TensorParallel{1, 2, PlanSource::File(f / "plan.json")});
}

TEST_CASE("load --verify: rank slices re-read their shards") {
  Fixture f;
  auto loaded = VerifiedRankLoad(f, "col", f.WriteManifest());  // 1-D tensors: dim 0 split
  REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
  CHECK(loaded->stats().verified ==
        "0 files verified from the loaded bytes, " + std::to_string(f.shards().size()) +
            " by reading them again");
}

TEST_CASE("load --verify: tensors a rank holds whole (replicated) are hashed in memory") {
  Fixture f;
  const std::string manifest = f.WriteManifest();
  auto loaded = VerifiedRankLoad(f, "row", manifest);  // 1-D tensors: replicated
  REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
  CHECK(loaded->stats().verified == std::to_string(f.shards().size()) +
                                        " files verified from the loaded bytes, 0 by reading "
                                        "them again");
  f.FlipMiddleByte(f.shards().begin()->first);
  auto bad = VerifiedRankLoad(f, "row", manifest);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kChecksumMismatch);
  CHECK(bad.error().path.find(f.shards().begin()->first) != std::string::npos);
}

}  // namespace
}  // namespace shardload

namespace shardload {
namespace {

TEST_CASE("load --verify: Reload checks again, from the reloaded bytes") {
  Fixture f;
  LoadOptions options;
  options.verify = f.WriteManifest();
  auto loader = Loader::Open(f.path(), options);
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE_MESSAGE(loaded, test::ErrorText(loaded));
  REQUIRE(loader->Reload(*loaded));
  CHECK(loaded->stats().verified.find("files verified from the loaded bytes, 0 by") !=
        std::string::npos);
  std::string victim = f.shards().begin()->first;
  f.FlipMiddleByte(victim, /*keep_mtime=*/true);
  Status s = loader->Reload(*loaded);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == ErrorCode::kChecksumMismatch);
  CHECK(s.error().path == f.shards().at(victim));
}

}  // namespace
}  // namespace shardload
