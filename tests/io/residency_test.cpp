// Page-cache residency and the auto read mode: the probes report exactly the
// pages a test warmed in a file it made cold (posix_fadvise DONTNEED), auto
// mode marks and splits segments by residency, loads over half-warm files are
// byte-exact against an independent pread reader (owned and caller memory,
// both backends), a file system that refuses O_DIRECT (injected) falls back
// to buffered reads in auto mode and fails forced direct loads, and the probe
// count on a huge sparse file stays bounded. On an overlay mount (made by the
// test; skipped where the kernel refuses) the default probe and auto mode see
// the cached pages that cachestat on the overlay descriptor does not.
// Tests run on $TMPDIR, which must be a disk-backed file system for the
// eviction checks (on tmpfs they report and skip); cachestat's exact counts
// are checked only where cachestat sees the file's pages (CanCachestat).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "io/file_table.h"
#include "io/load_harness.h"
#include "io/residency.h"
#include "shardload/loader.h"
#include "support/overlay_mount.h"
#include "support/test_util.h"
#include "util/fd.h"

namespace shardload::test {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMiB = 1ULL << 20;

FileDescriptor OpenRead(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd.valid());
  return fd;
}

// Writes the file back and drops its pages from the page cache.
void Evict(const std::string& path) {
  FileDescriptor fd = OpenRead(path);
  REQUIRE(::fdatasync(fd.get()) == 0);
  REQUIRE(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED) == 0);
}

// Reads bytes [offset, offset + length) without readahead, so that exactly
// their pages become resident.
void Warm(const std::string& path, std::uint64_t offset, std::uint64_t length) {
  FileDescriptor fd = OpenRead(path);
  REQUIRE(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_RANDOM) == 0);
  std::string buf(length, '\0');
  REQUIRE(::pread(fd.get(), buf.data(), length, static_cast<off_t>(offset)) ==
          static_cast<ssize_t>(length));
}

// The forced methods whose counts are defined for `fd`: mincore always;
// cachestat where the kernel has it and it sees this file system's pages.
std::vector<ResidencyMethod> Methods(int fd) {
  std::vector<ResidencyMethod> m{ResidencyMethod::kMincore};
  if (ResidencyProbe::Best() != ResidencyMethod::kCachestat) {
    MESSAGE("no cachestat(2) in this kernel: mincore only");
  } else if (!CanCachestat(fd)) {
    MESSAGE("cachestat cannot see this file system's pages (overlayfs/FUSE): mincore only");
  } else {
    m.push_back(ResidencyMethod::kCachestat);
  }
  return m;
}

// True (after saying so) when this file system keeps pages DONTNEED should drop.
bool EvictionUnsupported(const std::string& path, std::uint64_t size) {
  FileDescriptor fd = OpenRead(path);
  ResidencyProbe probe(ResidencyMethod::kMincore);
  auto count = probe.Probe(fd.get(), path, 0, size);
  REQUIRE(count);
  if (count->cached == 0) return false;
  MESSAGE("posix_fadvise(DONTNEED) left " << count->cached << " pages cached in " << path
                                          << " (tmpfs?): skipped");
  return true;
}

std::string RandomBytes(std::mt19937_64& rng, std::uint64_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A checkpoint of one shard, laid out by hand: a (6 MiB + 100 bytes), b (13
// MiB), c (4 KiB + 3), d (50,000 bytes), in that file order.
struct HalfWarm {
  TempDir dir;
  std::string path = dir / "model.safetensors";
  std::string data;
  std::uint64_t data_offset = 0;

  explicit HalfWarm(std::mt19937_64& rng) {
    const std::uint64_t sizes[] = {6 * kMiB + 100, 13 * kMiB, 4096 + 3, 50000};
    const char* names[] = {"a", "b", "c", "d"};
    std::string json = "{";
    std::uint64_t at = 0;
    for (int i = 0; i < 4; ++i) {
      json += std::string(i ? "," : "") + "\"" + names[i] + "\":{\"dtype\":\"U8\",\"shape\":[" +
              std::to_string(sizes[i]) + "],\"data_offsets\":[" + std::to_string(at) + "," +
              std::to_string(at + sizes[i]) + "]}";
      at += sizes[i];
    }
    json += "}";
    data = RandomBytes(rng, at);
    WriteFile(path, RawSafetensors(json, data));
    data_offset = 8 + json.size();
  }
};

// An auto-mode loader of `ckpt` on the pread backend.
Loader PreadLoader(const Checkpoint& ckpt) {
  LoadOptions options;
  options.backend = Backend::kPread;
  auto loader = Loader::Open(ckpt, options);
  REQUIRE(loader);
  return std::move(*loader);
}

// b's interior warm range: 2 MiB aligned in the file, strictly inside b.
struct WarmPlan {
  std::uint64_t w0 = 0, w1 = 0;
};

WarmPlan WarmHalf(const Checkpoint& ckpt, const std::string& path) {
  const TensorInfo& b = *ckpt.Find("b");
  const TensorInfo& c = *ckpt.Find("c");
  WarmPlan w;
  w.w0 = (b.offset + kResidencyGranule - 1) / kResidencyGranule * kResidencyGranule +
         kResidencyGranule;
  w.w1 = w.w0 + 2 * kResidencyGranule;
  REQUIRE(w.w1 < b.offset + b.size);
  Evict(path);
  Warm(path, w.w0, w.w1 - w.w0);
  Warm(path, c.offset, c.size);
  return w;
}

}  // namespace

TEST_CASE("residency probes report exactly the pages read into a cold file") {
  TempDir dir;
  const std::string path = dir / "cold.bin";
  std::mt19937_64 rng(Seed());
  const std::uint64_t size = 64 * kMiB + 123;
  WriteFile(path, RandomBytes(rng, size));
  Evict(path);
  if (EvictionUnsupported(path, size)) return;
  // Page ranges [first, last) to warm, in pages; the last touches the file end.
  const std::uint64_t pages = (size + kPage - 1) / kPage;
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> warm = {
      {0, 1}, {100, 300}, {5000, 5001}, {9000, 9517}, {pages - 3, pages}};
  for (auto [first, last] : warm) {
    Warm(path, first * kPage, std::min(last * kPage, size) - first * kPage);
  }
  FileDescriptor fd = OpenRead(path);
  std::vector<ResidencyMethod> methods = Methods(fd.get());
  ResidencyProbe picker;  // and the method a default probe picks for this file
  REQUIRE(picker.Probe(fd.get(), path, 0, kPage));
  methods.push_back(picker.method());
  for (ResidencyMethod method : methods) {
    CAPTURE(ResidencyMethodName(method));
    ResidencyProbe probe(method);
    auto count = probe.Probe(fd.get(), path, 0, size);
    REQUIRE(count);
    std::uint64_t want = 0;
    for (auto [first, last] : warm) want += last - first;
    CHECK(count->cached == want);
    CHECK(count->pages == pages);
    // Page-granular map: the warmed ranges, exactly.
    auto pieces = MapResidency(probe, fd.get(), path, 0, size, kPage);
    REQUIRE(pieces);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
    std::uint64_t next = 0;
    for (const ResidentPiece& p : *pieces) {
      CHECK(p.offset == next);  // contiguous cover
      next = p.offset + p.length;
      if (p.resident) got.emplace_back(p.offset / kPage, (p.offset + p.length + kPage - 1) / kPage);
    }
    CHECK(next == size);
    CHECK(got == warm);
    // A range inside a warm run and one inside a cold gap.
    auto inside = probe.Probe(fd.get(), path, 150 * kPage + 7, 10 * kPage);
    REQUIRE(inside);
    CHECK(inside->cached == inside->pages);
    auto gap = probe.Probe(fd.get(), path, 400 * kPage, 4000 * kPage);
    REQUIRE(gap);
    CHECK(gap->cached == 0);
  }
}

TEST_CASE("auto mode marks resident ranges buffered and splits a half-warm tensor") {
  std::mt19937_64 rng(Seed() + 1);
  HalfWarm fx(rng);
  auto ckpt = Checkpoint::Open(fx.path);
  REQUIRE(ckpt);
  Evict(fx.path);
  if (EvictionUnsupported(fx.path, fx.data_offset + fx.data.size())) return;
  WarmPlan w = WarmHalf(*ckpt, fx.path);

  std::vector<Segment> segments;
  std::vector<std::string> paths = {fx.path};
  bool needed[] = {true};
  auto files = FileTable::Open(paths, needed, IoMode::kAuto);
  REQUIRE(files);
  std::vector<std::byte> memory(32 * kMiB);
  for (const char* name : {"a", "b", "c", "d"}) {
    const TensorInfo& t = *ckpt->Find(name);
    segments.push_back(Segment{0, t.offset, t.size, memory.data() + (t.offset - fx.data_offset),
                               static_cast<std::uint32_t>(segments.size())});
  }
  auto report = MarkResidency(segments, *files, IoMode::kAuto);
  REQUIRE_MESSAGE(report, ErrorText(report));
  CHECK(report->note.empty());
  CHECK(report->probes > 0);
  std::sort(segments.begin(), segments.end(),
            [](const Segment& x, const Segment& y) { return x.offset < y.offset; });
  const TensorInfo& a = *ckpt->Find("a");
  const TensorInfo& b = *ckpt->Find("b");
  const TensorInfo& c = *ckpt->Find("c");
  const TensorInfo& d = *ckpt->Find("d");
  // a cold; b cold | warm | cold (its last page, c's first, is warm: 1 of
  // about 257 in its last granule); c warm; d cold (1 warm page of 13).
  // Where a direct range shares an O_DIRECT alignment block with a buffered
  // neighbour (b's end and d's start touch c), the part in that block is
  // read buffered, so that the rest can be read direct from aligned offsets.
  const std::uint64_t align = files->alignment();
  REQUIRE(align > 1);
  struct Want {
    std::uint64_t offset, length;
    bool direct;
    std::uint32_t tag;
  };
  const std::uint64_t b_end = b.offset + b.size;
  const std::uint64_t b_cut = b_end / align * align;
  const std::uint64_t d_cut = (d.offset + align - 1) / align * align;
  std::vector<Want> want = {{a.offset, a.size, true, 0},
                            {b.offset, w.w0 - b.offset, true, 1},
                            {w.w0, w.w1 - w.w0, false, 1},
                            {w.w1, b_cut - w.w1, true, 1},
                            {b_cut, b_end - b_cut, false, 1},
                            {c.offset, c.size, false, 2},
                            {d.offset, d_cut - d.offset, false, 3},
                            {d_cut, d.offset + d.size - d_cut, true, 3}};
  std::erase_if(want, [](const Want& x) { return x.length == 0; });
  std::erase_if(segments, [](const Segment& x) { return x.length == 0; });
  REQUIRE(segments.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(segments[i].offset == want[i].offset);
    CHECK(segments[i].length == want[i].length);
    CHECK(segments[i].direct == want[i].direct);
    CHECK(segments[i].tag == want[i].tag);
    CHECK(segments[i].dst == memory.data() + (want[i].offset - fx.data_offset));
  }
  CHECK(files->fd(0, true) >= 0);  // opened for the direct segments

  SUBCASE("buffered and direct modes mark everything one way, without probing") {
    for (IoMode mode : {IoMode::kBuffered, IoMode::kDirect}) {
      auto again = MarkResidency(segments, *files, mode);
      REQUIRE(again);
      CHECK(again->probes == 0);
      for (const Segment& s : segments) CHECK(s.direct == (mode == IoMode::kDirect));
    }
  }
}

TEST_CASE("auto-mode loads over a half-warm file are byte-exact") {
  std::mt19937_64 rng(Seed() + 2);
  HalfWarm fx(rng);
  auto ckpt = Checkpoint::Open(fx.path);
  REQUIRE(ckpt);
  Evict(fx.path);
  if (EvictionUnsupported(fx.path, fx.data_offset + fx.data.size())) return;
  for (Backend backend : {Backend::kPread, Backend::kIoUring}) {
    for (bool caller : {false, true}) {
      for (unsigned threads : {1u, 3u}) {
        CAPTURE(static_cast<int>(backend));
        CAPTURE(caller);
        CAPTURE(threads);
        LoadOptions options;
        options.backend = backend;
        options.threads = threads;
        options.chunk_size = 1 * kMiB;
        auto loader = Loader::Open(*ckpt, options);
        if (!loader && backend == Backend::kIoUring) {
          MESSAGE("io_uring unavailable: " << loader.error().ToString());
          continue;
        }
        REQUIRE(loader);
        WarmHalf(*ckpt, fx.path);
        LoadStats stats;
        std::vector<std::pair<std::string, std::string>> got;  // name, bytes
        if (caller) {
          // Unaligned caller buffers, with guard bytes around each.
          std::vector<std::string> buffers;
          std::vector<Destination> dst;
          for (const TensorInfo& t : ckpt->tensors()) buffers.push_back(std::string(t.size + 2, 'G'));
          for (std::size_t i = 0; i < buffers.size(); ++i) {
            const TensorInfo& t = ckpt->tensors()[i];
            dst.push_back(Destination{t.name, buffers[i].data() + 1, t.size});
          }
          auto loaded = loader->LoadInto(dst);
          REQUIRE_MESSAGE(loaded, ErrorText(loaded));
          stats = *loaded;
          for (std::size_t i = 0; i < buffers.size(); ++i) {
            CHECK(buffers[i].front() == 'G');
            CHECK(buffers[i].back() == 'G');
            got.emplace_back(dst[i].name, buffers[i].substr(1, buffers[i].size() - 2));
          }
        } else {
          auto loaded = loader->Load();
          REQUIRE_MESSAGE(loaded, ErrorText(loaded));
          stats = loaded->stats();
          for (const LoadedTensor& t : loaded->tensors()) {
            got.emplace_back(t.name, std::string(reinterpret_cast<const char*>(t.data.data()),
                                                 t.data.size()));
          }
        }
        REQUIRE(got.size() == 4);
        for (const auto& [name, bytes] : got) {
          CAPTURE(name);
          CHECK(bytes == OracleRead(*ckpt, *ckpt->Find(name)));
        }
        CHECK(stats.mode == IoMode::kAuto);
        CHECK(stats.bytes_direct > 0);
        CHECK(stats.bytes_buffered >= 2 * kResidencyGranule);
        CHECK(stats.bytes_direct + stats.bytes_buffered == stats.bytes_read);
        CHECK(stats.mode_note.empty());
      }
    }
  }
}

TEST_CASE("a file system that refuses O_DIRECT: auto reads it buffered, --direct fails") {
  std::mt19937_64 rng(Seed() + 3);
  HalfWarm fx(rng);
  auto ckpt = Checkpoint::Open(fx.path);
  REQUIRE(ckpt);
  Evict(fx.path);
  if (EvictionUnsupported(fx.path, fx.data_offset + fx.data.size())) return;
  ScopedRefuseDirect refuse;
  {
    Loader loader = PreadLoader(*ckpt);
    auto loaded = loader.Load();
    REQUIRE_MESSAGE(loaded, ErrorText(loaded));
    const LoadStats& stats = loaded->stats();
    CHECK(stats.bytes_direct == 0);
    CHECK(stats.bytes_buffered == stats.bytes_read);
    CHECK(stats.mode_note.find("refused") != std::string::npos);
    CHECK(stats.mode_note.find(fx.path) != std::string::npos);
    for (const LoadedTensor& t : loaded->tensors()) {
      CHECK(std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size()) ==
            OracleRead(*ckpt, *ckpt->Find(t.name)));
    }
  }
  {
    LoadOptions options;
    options.mode = IoMode::kDirect;
    auto loader = Loader::Open(*ckpt, options);
    REQUIRE(loader);
    auto loaded = loader->Load();
    REQUIRE(!loaded);
    CHECK(loaded.error().code == ErrorCode::kUnsupported);
    CHECK(loaded.error().path == fx.path);
  }
}

TEST_CASE("probing a huge sparse checkpoint costs a bounded number of calls") {
  TempDir dir;
  const std::string path = dir / "sparse.bin";
  const std::uint64_t size = 700ULL << 30;  // 700 GiB of holes
  {
    FileDescriptor fd(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
      MESSAGE("cannot make a 700 GiB sparse file here: skipped");
      return;
    }
  }
  std::vector<std::string> paths = {path};
  bool needed[] = {true};
  auto files = FileTable::Open(paths, needed, IoMode::kAuto);
  REQUIRE(files);
  // 90,000 segments of ~7.8 MB over the file (fake, never-used destinations).
  const std::uint64_t n = 90000, step = size / n;
  std::vector<Segment> segments;
  auto* base = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);
  for (std::uint64_t i = 0; i < n; ++i) {
    segments.push_back(Segment{0, i * step, step - 64, base + i * step,
                               static_cast<std::uint32_t>(i)});
  }
  auto cold = MarkResidency(segments, *files, IoMode::kAuto);
  REQUIRE(cold);
  // The used range, sampled (kSamples windows) and, nothing being cached,
  // probed whole once.
  const std::uint64_t per_call = cold->method == ResidencyMethod::kCachestat ? 1 : 3;
  CHECK(cold->probes == per_call * kSamples + (per_call == 1 ? 1 : 3 * 700));
  for (const Segment& s : segments) CHECK(s.direct);
  // Warm one page inside segment 12345: found by the exact probes of ranges
  // whose windows are cold, halving the segments (17 levels) and then that
  // segment's bytes (about 2 more), each level costing two samples.
  Warm(path, 12345 * step + 10 * kMiB, kPage);
  if (cold->method == ResidencyMethod::kCachestat) {
    auto mixed = MarkResidency(segments, *files, IoMode::kAuto);
    REQUIRE(mixed);
    MESSAGE("probes for one warm page among 90,000 cold segments: " << mixed->probes);
    CHECK(mixed->probes <= 2 * 20 * (kSamples + 1));
    CHECK(segments.size() == n);  // one page of a 2 MiB granule: still cold by majority
  }
}

}  // namespace shardload::test

namespace shardload::test {

TEST_CASE("on an overlay mount the default probe and auto mode see cached pages") {
  OverlayMount overlay;
  if (!overlay.ok()) {
    MESSAGE(overlay.reason() << ": skipped");
    return;
  }
  std::mt19937_64 rng(Seed() + 4);
  const std::string path = overlay / "model.safetensors";
  const std::uint64_t size = 8 * kMiB;
  const std::string json = "{\"w\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(size) +
                           "],\"data_offsets\":[0," + std::to_string(size) + "]}}";
  const std::string data = RandomBytes(rng, size);
  WriteFile(path, RawSafetensors(json, data));
  const std::uint64_t file_size = 8 + json.size() + size;
  Warm(path, 0, file_size);  // wholly cached
  FileDescriptor fd = OpenRead(path);
  CHECK(!CanCachestat(fd.get()));
  ResidencyProbe probe;
  auto count = probe.Probe(fd.get(), path, 0, file_size);
  REQUIRE_MESSAGE(count, ErrorText(count));
  CHECK(probe.method() == ResidencyMethod::kMincore);
  CHECK(count->cached == count->pages);
  if (ResidencyProbe::Best() == ResidencyMethod::kCachestat) {
    auto blind = ResidencyProbe(ResidencyMethod::kCachestat).Probe(fd.get(), path, 0, file_size);
    REQUIRE(blind);
    MESSAGE("cachestat on the overlay descriptor: " << blind->cached << " of " << blind->pages
                                                    << " pages cached");
  }
  auto ckpt = Checkpoint::Open(path);
  REQUIRE(ckpt);
  Loader loader = PreadLoader(*ckpt);
  auto loaded = loader.Load();
  REQUIRE_MESSAGE(loaded, ErrorText(loaded));
  CHECK(loaded->stats().mode == IoMode::kAuto);
  CHECK(loaded->stats().bytes_direct == 0);
  CHECK(loaded->stats().bytes_read == size);
  const LoadedTensor& w = loaded->tensors().front();
  CHECK(std::string(reinterpret_cast<const char*>(w.data.data()), w.data.size()) == data);
  // Evicted (where the backing file system drops pages), the same file is cold.
  Evict(path);
  auto cold = probe.Probe(fd.get(), path, 0, file_size);
  REQUIRE(cold);
  if (cold->cached == 0) {
    auto again = loader.Load();
    REQUIRE_MESSAGE(again, ErrorText(again));
    if (again->stats().mode_note.empty()) {
      CHECK(again->stats().bytes_direct > 0);
    } else {
      MESSAGE(again->stats().mode_note);
    }
  } else {
    MESSAGE("posix_fadvise(DONTNEED) kept the overlay file's pages (tmpfs below?)");
  }
}

}  // namespace shardload::test
