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

// Runs the plan against the fake files into `memory` (a copy of the real
// memory span [base, base + size)), checking that every write stays inside a
// segment destination or a window.
void Simulate(const ReadPlan& plan, std::byte* base, std::size_t size,
              std::span<const Segment> segments, std::span<const Window> windows) {
  auto inside = [&](const std::byte* p, std::uint64_t n) {
    for (const Segment& s : segments) {
      if (p >= s.dst && p + n <= s.dst + s.length) return true;
    }
    for (const Window& w : windows) {
      if (p >= w.begin && p + n <= w.end) return true;
    }
    return false;
  };
  for (const ReadOp& op : AllOps(plan)) {
    if (op.staged()) {
      REQUIRE(op.copy_dst >= base);
      REQUIRE(op.copy_dst + op.copy_length <= base + size);
      for (std::uint64_t i = 0; i < op.copy_length; ++i) {
        if (!inside(op.copy_dst + i, 1)) FAIL("staged copy outside the segments");
        op.copy_dst[i] = FileByte(op.file, op.offset + op.copy_skip + i);
      }
    } else {
      REQUIRE(op.dst >= base);
      REQUIRE(op.dst + op.length <= base + size);
      // Bytes past `required` may be past EOF: written only if the file has them.
      for (std::uint64_t i = 0; i < op.length; ++i) {
        if (!inside(op.dst + i, 1)) {
          FAIL("read writes outside segments and windows at op offset " << op.offset);
        }
        op.dst[i] = FileByte(op.file, op.offset + i);
      }
    }
  }
}

void CheckSegments(std::span<const Segment> segments) {
  for (const Segment& s : segments) {
    for (std::uint64_t i = 0; i < s.length; ++i) {
      if (s.dst[i] != FileByte(s.file, s.offset + i)) {
        FAIL("segment tag " << s.tag << " byte " << i << " wrong");
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

}  // namespace
}  // namespace shardload
