// Read planner: coalescing, splitting, ordering, balance and O_DIRECT
// alignment, checked by simulating the planned reads on fake files.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "plan/read_planner.h"
#include "support/test_util.h"

namespace shardload {
namespace {

std::vector<ReadOp> AllOps(const ReadPlan& plan) { return plan.ops; }


ReadPlan MustPlan(std::span<const Segment> segments, const PlanOptions& options) {
  auto plan = PlanReads(segments, options);
  REQUIRE_MESSAGE(plan.has_value(), shardload::test::ErrorText(plan));
  return std::move(*plan);
}

// The byte at `offset` of fake file `file`.
std::byte FileByte(std::uint32_t file, std::uint64_t offset) {
  std::uint64_t x = (offset + 1) * 0x9E3779B97F4A7C15ULL ^ (file + 1) * 0xC2B2AE3D27D4EB4FULL;
  return static_cast<std::byte>((x >> 29) & 0xFF);
}

// True when [p, p + n) lies inside one run of a segment.
bool InsideSegments(std::span<const Segment> segments, const std::byte* p, std::uint64_t n) {
  for (const Segment& s : segments) {
    if (p < s.dst) continue;
    std::uint64_t rel = static_cast<std::uint64_t>(p - s.dst);
    std::uint64_t i = s.count > 1 ? rel / s.dst_stride : 0;
    if (i >= s.count) continue;
    std::uint64_t in = rel - i * (s.count > 1 ? s.dst_stride : 0);
    if (in + n <= s.length) return true;
  }
  return false;
}

// Runs the plan against the fake files into `memory` (a copy of the real
// memory span [base, base + size)), read by read (PieceOf), checking that
// every write stays inside a segment's runs or a window, and, with
// alignment > 1, that O_DIRECT reads are aligned. Staged reads are copied
// out here from the plan's scatter segments run by run (not with the
// engine's copy-out).
void Simulate(const ReadPlan& plan, std::byte* base, std::size_t size,
              std::span<const Segment> segments, std::span<const Window> windows,
              std::uint64_t alignment = 1) {
  auto inside = [&](const std::byte* p, std::uint64_t n) {
    if (InsideSegments(segments, p, n)) return true;
    for (const Window& w : windows) {
      if (p >= w.begin && p + n <= w.end) return true;
    }
    return false;
  };
  auto put = [&](std::byte* dst, std::uint32_t file, std::uint64_t offset) {
    if (dst < base || dst >= base + size) FAIL("write outside memory at file offset " << offset);
    if (!inside(dst, 1)) FAIL("write outside segments and windows, file offset " << offset);
    *dst = FileByte(file, offset);
  };
  std::uint64_t reads = 0;
  for (const ReadOp& op : plan.ops) {
    for (std::uint64_t k = 0; k < op.pieces; ++k, ++reads) {
      ReadOp p = PieceOf(op, k);
      REQUIRE(p.required <= p.length);
      REQUIRE(p.length > 0);
      if (op.direct && alignment > 1) {
        CHECK(p.offset % alignment == 0);
        CHECK(p.length % alignment == 0);
        if (!p.staged()) CHECK(reinterpret_cast<std::uintptr_t>(p.dst) % alignment == 0);
      }
      if (!p.staged()) {
        // Bytes past `required` may be past EOF: written only if the file has them.
        for (std::uint64_t i = 0; i < p.length; ++i) put(p.dst + i, p.file, p.offset + i);
        continue;
      }
      REQUIRE(p.copy_skip + p.copy_length <= p.length);
      if (p.scatter_count == 0) {
        for (std::uint64_t i = 0; i < p.copy_length; ++i) {
          put(p.copy_dst + i, p.file, p.offset + p.copy_skip + i);
        }
        continue;
      }
      const std::uint64_t lo = p.offset + p.copy_skip, hi = lo + p.copy_length;
      REQUIRE(p.scatter_begin + p.scatter_count <= plan.scatter.size());
      for (std::uint32_t j = 0; j < p.scatter_count; ++j) {
        const Segment& s = plan.scatter[p.scatter_begin + j];
        for (std::uint64_t i = 0; i < s.count; ++i) {
          std::uint64_t run = s.offset + i * s.src_stride;
          for (std::uint64_t b = std::max(run, lo); b < std::min(run + s.length, hi); ++b) {
            put(s.dst + i * s.dst_stride + (b - run), s.file, b);
          }
        }
      }
    }
  }
  CHECK(reads == plan.reads);
}

void CheckSegments(std::span<const Segment> segments) {
  for (const Segment& s : segments) {
    for (std::uint64_t r = 0; r < s.count; ++r) {
      for (std::uint64_t i = 0; i < s.length; ++i) {
        if (s.dst[r * s.dst_stride + i] != FileByte(s.file, s.offset + r * s.src_stride + i)) {
          FAIL("segment tag " << s.tag << " run " << r << " byte " << i << " wrong");
        }
      }
    }
  }
}

TEST_CASE("coalesces only ranges adjacent both in the file and in memory") {
  std::vector<std::byte> mem(4096);
  std::byte* m = mem.data();
  PlanOptions options;
  SUBCASE("adjacent in both: one read") {
    Segment s[] = {{0, 1100, 100, m + 100, 1}, {0, 1000, 100, m, 0}};
    auto ops = AllOps(MustPlan(s, options));
    REQUIRE(ops.size() == 1);
    CHECK(ops[0].offset == 1000);
    CHECK(ops[0].length == 200);
    CHECK(ops[0].dst == m);
    CHECK(ops[0].tag == 0);
  }
  SUBCASE("adjacent in the file only") {
    Segment s[] = {{0, 1000, 100, m, 0}, {0, 1100, 100, m + 300, 1}};
    CHECK(AllOps(MustPlan(s, options)).size() == 2);
  }
  SUBCASE("adjacent in memory only") {
    Segment s[] = {{0, 1000, 100, m, 0}, {0, 1200, 100, m + 100, 1}};
    CHECK(AllOps(MustPlan(s, options)).size() == 2);
  }
  SUBCASE("different files") {
    Segment s[] = {{0, 1000, 100, m, 0}, {1, 1100, 100, m + 100, 1}};
    CHECK(AllOps(MustPlan(s, options)).size() == 2);
  }
  SUBCASE("strided rows of a slice stay separate reads into their rows") {
    // A column slice: 4 rows of 16 bytes taken from rows of 64 bytes.
    std::vector<Segment> rows;
    for (std::uint32_t r = 0; r < 4; ++r) rows.push_back({0, 8 + r * 64, 16, m + r * 16, r});
    auto ops = AllOps(MustPlan(rows, options));
    REQUIRE(ops.size() == 4);
    for (std::uint32_t r = 0; r < 4; ++r) CHECK(ops[r].dst == m + r * 16);
  }
  SUBCASE("zero-length segments are dropped") {
    Segment s[] = {{0, 1000, 0, m, 0}, {0, 1000, 10, m, 1}};
    auto ops = AllOps(MustPlan(s, options));
    REQUIRE(ops.size() == 1);
    CHECK(ops[0].tag == 1);
  }
}

TEST_CASE("splits long ranges at chunk_size") {
  std::vector<std::byte> mem(10000);
  PlanOptions options;
  options.chunk_size = 4096;
  Segment s[] = {{0, 77, 10000, mem.data(), 0}};
  auto ops = AllOps(MustPlan(s, options));
  REQUIRE(ops.size() == 3);
  CHECK(ops[0].length == 4096);
  CHECK(ops[1].length == 4096);
  CHECK(ops[2].length == 10000 - 8192);
  CHECK(ops[1].offset == 77 + 4096);
  CHECK(ops[2].dst == mem.data() + 8192);
  for (const ReadOp& op : ops) CHECK(op.required == op.length);
}

TEST_CASE("rejects bad input") {
  std::vector<std::byte> mem(100);
  PlanOptions options;
  SUBCASE("overlapping destinations") {
    Segment s[] = {{0, 0, 50, mem.data(), 0}, {0, 100, 50, mem.data() + 40, 1}};
    auto plan = PlanReads(s, options);
    REQUIRE(!plan);
    CHECK(plan.error().code == ErrorCode::kInvalidArgument);
  }
  SUBCASE("null destination") {
    Segment s[] = {{0, 0, 50, nullptr, 0}};
    CHECK(PlanReads(s, options).error().code == ErrorCode::kInvalidArgument);
  }
  SUBCASE("offset overflow") {
    Segment s[] = {{0, ~0ULL - 10, 50, mem.data(), 0}};
    CHECK(PlanReads(s, options).error().code == ErrorCode::kInvalidArgument);
  }
  SUBCASE("bad alignment") {
    options.direct = true;
    options.alignment = 1000;
    Segment s[] = {{0, 0, 50, mem.data(), 0}};
    CHECK(PlanReads(s, options).error().code == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("orders reads per file and balances bytes across workers") {
  std::mt19937_64 rng(test::Seed());
  std::vector<std::byte> mem(400 * 1000);
  std::vector<Segment> segs;
  for (std::uint32_t i = 0; i < 400; ++i) {
    // Two files, tensors of 1000 bytes, shuffled; memory not adjacent.
    segs.push_back({i % 2, 5000 + (i / 2) * 1000 + (i / 2) * 8, 1000, mem.data() + i * 1000, i});
  }
  std::shuffle(segs.begin(), segs.end(), rng);
  for (unsigned workers : {1u, 2u, 3u, 8u}) {
    PlanOptions options;
    options.workers = workers;
    options.chunk_size = 600;
    ReadPlan plan = MustPlan(segs, options);
    REQUIRE(plan.workers() == workers);
    REQUIRE(plan.bounds.front() == 0);
    REQUIRE(plan.bounds.back() == plan.ops.size());
    std::uint64_t total = 0;
    std::uint64_t largest = 0, smallest = ~0ULL;
    for (unsigned w = 0; w < workers; ++w) {
      std::span<const ReadOp> ops = plan.share(w);
      std::uint64_t bytes = 0;
      for (std::size_t k = 0; k < ops.size(); ++k) {
        bytes += ops[k].length;
        CHECK(ops[k].length <= 600);
        if (k > 0) {
          bool ordered = ops[k - 1].file < ops[k].file ||
                         (ops[k - 1].file == ops[k].file && ops[k - 1].offset < ops[k].offset);
          CHECK(ordered);
        }
      }
      total += bytes;
      largest = std::max(largest, bytes);
      smallest = std::min(smallest, bytes);
    }
    CHECK(total == 400 * 1000);
    CHECK(plan.bytes_delivered == 400 * 1000);
    CHECK(largest - smallest <= 600);  // within one op
  }
}

TEST_CASE("empty input gives an empty plan for every worker") {
  PlanOptions options;
  options.workers = 3;
  ReadPlan plan = MustPlan({}, options);
  CHECK(plan.workers() == 3);
  CHECK(plan.ops.empty());
  for (unsigned w = 0; w < 3; ++w) CHECK(plan.share(w).empty());
}

TEST_CASE("O_DIRECT: reads straight into aligned memory when the slack is ours") {
  constexpr std::uint64_t kA = 512;
  alignas(4096) static std::byte mem[64 * 1024];
  PlanOptions options;
  options.direct = true;
  options.alignment = kA;
  options.chunk_size = 4096;
  // A tensor at file offset 1000 (mod 512 = 488), 5000 bytes long.
  Segment seg{0, 1000, 5000, mem + 4096 + 488, 0};
  SUBCASE("congruent and inside a window: direct, no copy") {
    Window w{mem + 4096, mem + 4096 + 6144};
    options.windows = {&w, 1};
    ReadPlan plan = MustPlan({&seg, 1}, options);
    auto ops = AllOps(plan);
    CHECK(plan.staging_size == 0);
    REQUIRE(ops.size() == 2);
    CHECK(ops[0].offset == 512);
    CHECK(ops[0].length == 4096);
    CHECK(ops[0].dst == mem + 4096);
    CHECK(ops[1].offset == 4608);
    CHECK(ops[1].length == 6144 - 4608);
    CHECK(ops[1].required == 6000 - 4608);  // the data ends at 6000: EOF may follow
    CHECK(ops[0].delivered + ops[1].delivered == 5000);
  }
  SUBCASE("no window: staged through aligned reads") {
    ReadPlan plan = MustPlan({&seg, 1}, options);
    auto ops = AllOps(plan);
    CHECK(plan.staging_size > 0);
    for (const ReadOp& op : ops) {
      CHECK(op.staged());
      CHECK(op.offset % kA == 0);
      CHECK(op.length % kA == 0);
      CHECK(op.length <= plan.staging_size);
    }
  }
  SUBCASE("not congruent: staged") {
    Window w{mem, mem + sizeof(mem)};
    options.windows = {&w, 1};
    seg.dst = mem + 4096;
    for (const ReadOp& op : AllOps(MustPlan({&seg, 1}, options))) CHECK(op.staged());
  }
  SUBCASE("slack would overwrite a neighbour's bytes: staged") {
    Window w{mem, mem + sizeof(mem)};
    options.windows = {&w, 1};
    Segment segs[] = {seg, {1, 0, 50, mem + 4096 + 400, 1}};  // inside seg's head slack
    for (const ReadOp& op : AllOps(MustPlan(segs, options))) {
      if (op.file == 0) CHECK(op.staged());
    }
  }
  SUBCASE("already aligned: direct without a window") {
    seg = Segment{0, 1024, 2048, mem + 8192, 0};
    auto ops = AllOps(MustPlan({&seg, 1}, options));
    REQUIRE(ops.size() == 1);
    CHECK(!ops[0].staged());
    CHECK(ops[0].required == 2048);
  }
}

// Random segment sets, checked end to end by simulation.
TEST_CASE("random plans deliver every segment byte and write nowhere else") {
  std::mt19937_64 rng(test::Seed() ^ 0x5eed);
  for (int round = 0; round < 200; ++round) {
    const bool direct = round % 2 == 1;
    const std::uint64_t align = std::uint64_t{512} << (rng() % 4);
    constexpr std::size_t kMem = 1 << 20;
    std::vector<std::byte> storage(kMem + 8192);
    auto misalignment = reinterpret_cast<std::uintptr_t>(storage.data()) % 4096;
    std::byte* base = storage.data() + (4096 - misalignment);
    std::memset(base, 0, kMem);
    std::vector<Segment> segs;
    std::vector<Window> windows;
    std::size_t cursor = 0;
    const int n = 1 + static_cast<int>(rng() % 60);
    std::uint64_t file_pos[3] = {8 * (rng() % 100), 8 * (rng() % 100), 8 * (rng() % 100)};
    for (int i = 0; i < n && cursor < kMem - 70000; ++i) {
      auto file = static_cast<std::uint32_t>(rng() % 3);
      std::uint64_t len = rng() % 4 == 0 ? rng() % 40000 : rng() % 700;
      std::uint64_t gap = rng() % 3 == 0 ? 8 * (rng() % 300) : 0;
      std::uint64_t off = file_pos[file] + gap;
      file_pos[file] = off + len;
      // Memory: mirrored (congruent) with a window, adjacent, or arbitrary.
      switch (rng() % 3) {
        case 0: {
          std::size_t wb = (cursor + align - 1) / align * align;
          std::size_t pos = wb + off % align;
          std::size_t we = (pos + len + align - 1) / align * align;
          windows.push_back({base + wb, base + we});
          segs.push_back({file, off, len, base + pos, static_cast<std::uint32_t>(i)});
          cursor = we;
          break;
        }
        case 1:
          segs.push_back({file, off, len, base + cursor, static_cast<std::uint32_t>(i)});
          cursor += len;
          break;
        default:
          cursor += rng() % 100;
          segs.push_back({file, off, len, base + cursor, static_cast<std::uint32_t>(i)});
          cursor += len;
      }
    }
    PlanOptions options;
    options.direct = direct;
    options.alignment = align;
    options.chunk_size = 1 + rng() % 20000;
    options.staging_chunk = 1 + rng() % 9000;
    options.workers = 1 + static_cast<unsigned>(rng() % 4);
    options.windows = windows;
    ReadPlan plan = MustPlan(segs, options);
    for (const ReadOp& op : AllOps(plan)) {
      CHECK(op.required <= op.length);
      CHECK(op.required > 0);
      if (direct) {
        CHECK(op.offset % align == 0);
        CHECK(op.length % align == 0);
        if (!op.staged()) CHECK(reinterpret_cast<std::uintptr_t>(op.dst) % align == 0);
        if (op.staged()) CHECK(op.length <= plan.staging_size);
      } else {
        CHECK(!op.staged());
        CHECK(op.length <= options.chunk_size);
      }
    }
    Simulate(plan, base, kMem, segs, windows);
    CheckSegments(segs);
  }
}

// --- strided segments --------------------------------------------------------

const ReadStrategy kForced[] = {ReadStrategy::kExact, ReadStrategy::kStaged,
                                ReadStrategy::kMixed, ReadStrategy::kMapped,
                                ReadStrategy::kAuto};

TEST_CASE("strided segments: every strategy, buffered and O_DIRECT, delivers every run byte") {
  std::mt19937_64 rng(test::Seed());
  constexpr std::size_t kMem = 1 << 20;
  constexpr std::uint64_t kA = 512;
  alignas(4096) static std::byte mem[kMem];
  for (int iter = 0; iter < 150; ++iter) {
    // One to three tensors, each a slice: `count` rows of `length` bytes
    // `stride` apart, landing in a dense local tensor (rows adjacent), inside
    // a window of its own on the alignment grid.
    std::vector<Segment> segs;
    std::vector<Window> windows;
    std::uint64_t cursor = 0, file_pos = rng() % 3000;
    const int tensors = 1 + static_cast<int>(rng() % 3);
    for (int t = 0; t < tensors; ++t) {
      Segment seg;
      seg.file = static_cast<std::uint32_t>(rng() % 2);
      seg.length = 1 + rng() % 300;
      seg.count = 1 + rng() % 40;
      seg.src_stride = seg.length + rng() % 700;
      seg.dst_stride = seg.length + (rng() % 4 == 0 ? rng() % 20 : 0);
      seg.offset = file_pos + rng() % 100;
      seg.tag = static_cast<std::uint32_t>(t);
      file_pos = seg.offset + (seg.count - 1) * seg.src_stride + seg.length + rng() % 5000;
      std::uint64_t begin = (cursor + kA - 1) / kA * kA;
      std::uint64_t pos = begin + seg.offset % kA;
      seg.dst = mem + pos;
      std::uint64_t end = pos + (seg.count - 1) * seg.dst_stride + seg.length;
      end = (end + kA - 1) / kA * kA;
      REQUIRE(end <= kMem);
      windows.push_back({mem + begin, mem + end});
      cursor = end;
      segs.push_back(seg);
    }
    for (ReadStrategy strategy : kForced) {
      for (bool direct : {false, true}) {
        PlanOptions options;
        options.strategy = strategy;
        options.direct = direct;
        options.alignment = direct ? kA : 1;
        options.chunk_size = std::uint64_t{1} << (9 + rng() % 6);  // 512 .. 16 KiB
        options.staging_chunk = std::uint64_t{1} << (9 + rng() % 4);
        options.map_window = std::uint64_t{1} << (9 + rng() % 6);
        options.workers = 1 + static_cast<unsigned>(rng() % 4);
        options.windows = windows;
        INFO("iter ", iter, " strategy ", std::string(ReadStrategyName(strategy)), " direct ", direct,
             " chunk ", options.chunk_size, " staging ", options.staging_chunk, " map window ",
             options.map_window);
        ReadPlan plan = MustPlan(segs, options);
        std::memset(mem, 0, kMem);
        Simulate(plan, mem, kMem, segs, windows, options.alignment);
        CheckSegments(segs);
        std::uint64_t received = 0, read = 0, reads = 0;
        for (const Segment& seg : segs) {
          const TagReads& t = plan.tags[seg.tag];
          received += seg.count * seg.length;
          CHECK(t.bytes == seg.count * seg.length);
          const bool plain = seg.count == 1 ||
                             (seg.src_stride == seg.length && seg.dst_stride == seg.length);
          if (plain) CHECK(t.strategy == ReadStrategy::kExact);  // one range: nothing to choose
          // Forced mapped with every segment O_DIRECT reads (and reports) as mixed.
          const bool reduced = strategy == ReadStrategy::kMapped && direct;
          if (!plain && strategy != ReadStrategy::kAuto && !reduced) CHECK(t.strategy == strategy);
          if (!plain && reduced) CHECK(t.strategy == ReadStrategy::kMixed);
          if (strategy == ReadStrategy::kMapped && !direct && !plain) {
            // Mappings of at most map_window over the covering range, none
            // for pieces inside a gap; bytes_read counts the bytes mapped.
            std::uint64_t cover = (seg.count - 1) * seg.src_stride + seg.length;
            CHECK(t.bytes_read >= t.bytes);
            CHECK(t.bytes_read <= cover);
            CHECK(t.read_ops <= cover / options.map_window + 2);
          }
          if (strategy == ReadStrategy::kExact && !direct) {
            CHECK(t.bytes_read == t.bytes);
          }
          if (strategy == ReadStrategy::kStaged && !plain) {
            // Reads of at most the staging chunk (at most chunk_size; O_DIRECT:
            // on the alignment grid) over the covering range, but none for
            // pieces that fall inside a gap.
            std::uint64_t cover = (seg.count - 1) * seg.src_stride + seg.length;
            std::uint64_t piece = std::min(options.staging_chunk, options.chunk_size);
            if (direct) piece = std::max(kA, piece / kA * kA);
            CHECK(t.bytes_read >= t.bytes);
            CHECK(t.bytes_read <= cover + (direct ? 2 * kA : 0));
            CHECK(t.read_ops <= cover / piece + 2);
          }
          read += t.bytes_read;
          reads += t.read_ops;
        }
        CHECK(plan.bytes_delivered == received);
        CHECK(plan.bytes_requested == read);
        CHECK(plan.reads == reads);
        if (options.workers > 0) CHECK(plan.bounds.back() == plan.ops.size());
        for (const ReadOp& op : plan.ops) {
          if (!op.mapped) continue;
          // A mapping: one buffered piece, copied out like a staged read, no staging.
          CHECK((strategy == ReadStrategy::kMapped || strategy == ReadStrategy::kAuto));
          CHECK(plan.tags[op.tag].strategy == ReadStrategy::kMapped);
          CHECK(!op.direct);
          CHECK(op.staged());
          CHECK(op.pieces == 1);
          CHECK(op.length <= options.map_window);
          CHECK(op.copy_skip + op.copy_length == op.length);
        }
        if (strategy == ReadStrategy::kMapped && !direct) CHECK(plan.staging_size == 0);
      }
    }
  }
}

TEST_CASE("staged reads cut runs at their edges and skip pieces that fall in gaps") {
  std::vector<std::byte> mem(64);
  // 4 runs of 10 bytes, 100 apart: the covering range [1000, 1310) read in
  // 64-byte pieces; pieces [1064, 1128) and [1192, 1256) hold no run bytes.
  Segment seg{0, 1000, 10, mem.data(), 7, 4, 100, 10};
  PlanOptions options;
  options.strategy = ReadStrategy::kStaged;
  options.staging_chunk = 64;
  ReadPlan plan = MustPlan({&seg, 1}, options);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> reads;
  for (const ReadOp& op : plan.ops) reads.emplace_back(op.offset, op.length);
  // The grid starts at the covering range: [1000,1064) [1064..) skipped,
  // [1128,1192) has run 2 [1200..) no: run 1 is [1100,1110) in [1064,1128).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> want = {
      {1000, 64}, {1064, 64}, {1192, 64}, {1256, 54}};
  CHECK(reads == want);
  CHECK(plan.tags[7].strategy == ReadStrategy::kStaged);
  CHECK(plan.tags[7].read_ops == 4);
  CHECK(plan.staging_size == 64);
  CHECK(plan.tags[7].bytes_read == 64 * 3 + 54);
  Simulate(plan, mem.data(), mem.size(), {&seg, 1}, {});
  CheckSegments({&seg, 1});
  // A run cut by a grid line: 2 runs of 40 bytes, 50 apart, pieces of 32.
  std::vector<std::byte> mem2(80);
  Segment cut{1, 0, 40, mem2.data(), 0, 2, 50, 40};
  options.staging_chunk = 32;
  ReadPlan plan2 = MustPlan({&cut, 1}, options);
  CHECK(plan2.ops.size() == 3);  // [0,32) [32,64) [64,90)
  CHECK(plan2.ops[1].delivered == 8 + 14);
  Simulate(plan2, mem2.data(), mem2.size(), {&cut, 1}, {});
  CheckSegments({&cut, 1});
}

TEST_CASE("exact strided reads are batches: one ReadOp holds many reads") {
  std::vector<std::byte> mem(1000 * 16);
  Segment seg{0, 64, 16, mem.data(), 0, 1000, 128, 16};
  PlanOptions options;
  options.strategy = ReadStrategy::kExact;
  options.chunk_size = 1024;  // 64 runs of 16 bytes per op
  ReadPlan plan = MustPlan({&seg, 1}, options);
  CHECK(plan.ops.size() == (1000 + 63) / 64);
  CHECK(plan.reads == 1000);
  CHECK(plan.tags[0].read_ops == 1000);
  CHECK(plan.bytes_requested == 16000);
  Simulate(plan, mem.data(), mem.size(), {&seg, 1}, {});
  CheckSegments({&seg, 1});
}

TEST_CASE("the cost model and max_over_read choose the strategy") {
  std::vector<std::byte> mem(4096 * 64);
  // 4096 runs of 64 bytes, 128 apart: the gap costs 64 bytes.
  Segment seg{0, 0, 64, mem.data(), 0, 4096, 128, 64};
  PlanOptions options;
  options.cost.mapped = {1e9, 100};  // out of the running unless a subcase says otherwise
  SUBCASE("reads are dear, bytes cheap: staged") {
    options.cost.warm = {2000, 0.1};
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kStaged);
  }
  SUBCASE("reads cheap, bytes dear: exact") {
    options.cost.warm = {1, 100};
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kExact);
  }
  SUBCASE("max_over_read 1: exact, whatever the prices") {
    options.cost.warm = {2000, 0.1};
    options.max_over_read = 1;
    ReadPlan plan = MustPlan({&seg, 1}, options);
    CHECK(plan.tags[0].strategy == ReadStrategy::kExact);
    CHECK(plan.bytes_requested == 4096 * 64);
  }
  SUBCASE("max_over_read below the covering ratio (2) keeps reads exact") {
    options.cost.warm = {2000, 0.1};
    options.max_over_read = 1.9;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kExact);
    options.max_over_read = 2.0;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kStaged);
  }
  SUBCASE("cold segments use the cold prices") {
    options.cost.warm = {1, 100};
    options.cost.cold = {2000, 0.1};
    seg.cold = true;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kStaged);
  }
  SUBCASE("mappings cheap: mapped, within max_over_read") {
    options.cost.warm = {2000, 0.1};
    options.cost.mapped = {1000, 0.01};
    ReadPlan plan = MustPlan({&seg, 1}, options);
    CHECK(plan.tags[0].strategy == ReadStrategy::kMapped);
    CHECK(plan.ops.size() == 1);  // the 512 KiB covering range in one window
    CHECK(plan.reads == 1);
    CHECK(plan.bytes_requested == 4095 * 128 + 64);
    options.max_over_read = 1.9;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kExact);
  }
  SUBCASE("auto never maps cold or O_DIRECT segments") {
    options.cost.warm = {2000, 0.1};
    options.cost.cold = {2000, 0.1};
    options.cost.direct = {2000, 0.1};
    options.cost.mapped = {1, 0.0001};
    seg.cold = true;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kStaged);
    seg.cold = false;
    seg.direct = true;
    options.alignment = 64;
    CHECK(MustPlan({&seg, 1}, options).tags[0].strategy == ReadStrategy::kStaged);
  }
  SUBCASE("max_over_read below 1 is refused") {
    options.max_over_read = 0.5;
    CHECK(PlanReads({&seg, 1}, options).error().code == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("a slice of a 10-million-row tensor plans a bounded number of ReadOps") {
  // Never dereferenced: the planner does not touch destination memory.
  auto* base = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);
  constexpr std::uint64_t kRows = 10'000'000;
  // Rank 3 of 8 of a [10M, 256] BF16 tensor split by columns: 10M runs of
  // 64 bytes, 512 apart (5.12 GB covering range, 640 MB received).
  Segment seg{0, 4096 + 3 * 64, 64, base, 0, kRows, 512, 64};
  for (ReadStrategy strategy : kForced) {
    for (bool direct : {false, true}) {
      PlanOptions options;
      options.strategy = strategy;
      options.direct = direct;
      options.workers = 8;
      INFO(std::string(ReadStrategyName(strategy)), " direct ", direct);
      ReadPlan plan = MustPlan({&seg, 1}, options);
      const std::uint64_t received = kRows * 64;
      CHECK(plan.bytes_delivered == received);
      // Exact: batches of at most chunk_size (4 MiB) read each; staged:
      // 1 MiB pieces of the 5.12 GB covering range. O(bytes / chunk), never
      // one ReadOp per row.
      CHECK(plan.ops.size() <= plan.bytes_requested / (1 << 20) + 2);
      CHECK(plan.ops.size() <= 20000);
      CHECK(plan.scatter.size() <= 1);
      if (plan.tags[0].strategy == ReadStrategy::kExact) CHECK(plan.reads == kRows);
      if (plan.tags[0].strategy == ReadStrategy::kStaged) CHECK(plan.reads == plan.ops.size());
      if (plan.tags[0].strategy == ReadStrategy::kMapped) {
        // 32 MiB mappings of the 5.12 GB covering range: 153 operations.
        CHECK(plan.reads == plan.ops.size());
        CHECK(plan.reads <= seg.count * seg.src_stride / options.map_window + 1);
      }
    }
  }
}

TEST_CASE("coalescing never merges a buffered range with an O_DIRECT one") {
  alignas(4096) static std::byte mem[8192];
  Segment s[] = {{0, 0, 4096, mem, 0}, {0, 4096, 4096, mem + 4096, 1}};
  s[1].direct = true;
  PlanOptions options;
  options.alignment = 4096;
  Window w{mem, mem + 8192};
  options.windows = {&w, 1};
  ReadPlan plan = MustPlan(s, options);
  REQUIRE(plan.ops.size() == 2);
  CHECK(!plan.ops[0].direct);
  CHECK(plan.ops[1].direct);
  Simulate(plan, mem, sizeof mem, s, {&w, 1}, 4096);
  CheckSegments(s);
}

TEST_CASE("rejects strides shorter than a run") {
  std::vector<std::byte> mem(100);
  Segment seg{0, 0, 10, mem.data(), 0, 3, 5, 10};
  CHECK(PlanReads({&seg, 1}, PlanOptions{}).error().code == ErrorCode::kInvalidArgument);
  seg.src_stride = 10;
  seg.dst_stride = 4;
  CHECK(PlanReads({&seg, 1}, PlanOptions{}).error().code == ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardload
