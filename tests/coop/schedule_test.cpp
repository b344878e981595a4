// The node's schedule (coop/schedule.h): every needed byte is in exactly one
// piece, pieces never overlap in a file or in staging, stay on the alignment
// grid and within a half, slots are balanced, and tensor-parallel row
// patterns of several ranks merge without expanding rows. Checked against a
// byte map (the oracle) on random needs.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "coop/schedule.h"
#include "support/test_util.h"

namespace shardload::test {
namespace {

using coop::MakeSchedule;
using coop::Need;
using coop::Piece;
using coop::Schedule;
using coop::ScheduleOptions;

// Which bytes of each file NEEDS cover, by brute force.
std::map<std::uint32_t, std::vector<bool>> Covered(const std::vector<Need>& needs,
                                                   const std::vector<std::uint64_t>& sizes) {
  std::map<std::uint32_t, std::vector<bool>> out;
  for (std::uint32_t f = 0; f < sizes.size(); ++f) out[f].assign(sizes[f], false);
  for (const Need& n : needs) {
    for (std::uint64_t i = 0; i < n.count; ++i) {
      for (std::uint64_t b = 0; b < n.length; ++b) out[n.file][n.offset + i * n.stride + b] = true;
    }
  }
  return out;
}

void CheckSchedule(const Schedule& s, const std::vector<Need>& needs, const ScheduleOptions& o) {
  auto need = Covered(needs, o.file_sizes);
  std::map<std::uint32_t, std::vector<int>> held;
  for (std::uint32_t f = 0; f < o.file_sizes.size(); ++f) held[f].assign(o.file_sizes[f], 0);
  std::vector<std::vector<std::uint64_t>> slot_bytes(s.waves, std::vector<std::uint64_t>(o.members));
  std::vector<std::pair<std::uint64_t, std::uint64_t>> staging;
  std::uint32_t last_wave = 0;
  for (const Piece& p : s.pieces) {
    REQUIRE(p.wave < s.waves);
    REQUIRE(p.wave >= last_wave);
    last_wave = p.wave;
    REQUIRE(p.slot < o.members);
    CHECK(p.offset % o.alignment == 0);
    CHECK(p.staging % o.alignment == 0);
    CHECK(p.offset + p.length <= o.file_sizes[p.file]);
    CHECK((p.length % o.alignment == 0 || p.offset + p.length == o.file_sizes[p.file]));
    const std::uint64_t half_base = (p.wave % 2) * s.half;
    CHECK(p.staging >= half_base);
    CHECK(p.staging + p.length <= half_base + s.half);
    for (std::uint64_t b = 0; b < p.length; ++b) ++held[p.file][p.offset + b];
    slot_bytes[p.wave][p.slot] += (p.length + o.alignment - 1) / o.alignment * o.alignment;
    staging.push_back({p.staging + p.wave * 2 * s.half, p.length});  // per wave, disjoint
  }
  std::uint64_t total = 0, twice = 0, missing = 0;
  for (auto& [f, bytes] : need) {
    for (std::uint64_t b = 0; b < bytes.size(); ++b) {
      twice += held[f][b] > 1 ? 1 : 0;                // read at most once
      missing += bytes[b] && held[f][b] != 1 ? 1 : 0;  // every needed byte read
      total += held[f][b];
    }
  }
  CHECK(twice == 0);
  CHECK(missing == 0);
  CHECK(total == s.bytes);
  std::sort(staging.begin(), staging.end());
  for (std::size_t i = 1; i < staging.size(); ++i) {
    CHECK(staging[i - 1].first + staging[i - 1].second <= staging[i].first);
  }
  // Balanced within an alignment unit, counting each piece in whole units (a
  // short piece at a file's end takes a unit of its slot's share).
  for (std::uint32_t w = 0; w < s.waves; ++w) {
    std::uint64_t hi = *std::max_element(slot_bytes[w].begin(), slot_bytes[w].end());
    std::uint64_t sum = 0;
    for (std::uint64_t b : slot_bytes[w]) sum += b;
    CHECK(hi <= (sum + o.members - 1) / o.members + o.alignment);
  }
}

TEST_CASE("schedule: tensor-parallel row patterns of all ranks merge into the whole tensor") {
  // A 64-row tensor of 8 x 512 bytes per row at offset 4096, split by
  // columns over 8 ranks: rank r reads 512 bytes of every 4096-byte row.
  std::vector<Need> needs;
  for (unsigned r = 0; r < 8; ++r) needs.push_back({0, 4096 + r * 512, 512, 64, 4096});
  ScheduleOptions o;
  o.staging = 64 << 10;
  o.alignment = 4096;
  o.members = 8;
  o.file_sizes = {4096 + 64 * 4096};
  Schedule s = MakeSchedule(needs, o);
  CHECK(s.bytes_needed == 64 * 4096);
  CHECK(s.bytes_gaps == 0);
  CHECK(s.bytes == 64 * 4096);
  CHECK(s.waves == 8);  // 256 KiB in halves of 32 KiB
  CheckSchedule(s, needs, o);
}

TEST_CASE("schedule: two of eight ranks on a node read their rows' covering range") {
  std::vector<Need> needs;
  for (unsigned r = 2; r < 4; ++r) needs.push_back({0, r * 512, 512, 16, 4096});
  ScheduleOptions o;
  o.staging = 1 << 20;
  o.members = 2;
  o.file_sizes = {16 * 4096};
  Schedule s = MakeSchedule(needs, o);
  CHECK(s.bytes_needed == 15 * 4096 + 1024);
  CHECK(s.bytes_gaps == s.bytes_needed - 16 * 1024);
  CheckSchedule(s, needs, o);
}

TEST_CASE("schedule: random needs, alignments, stagings and members") {
  std::mt19937_64 rng(Seed());
  for (int round = 0; round < 200; ++round) {
    ScheduleOptions o;
    o.alignment = 1ULL << (9 + rng() % 4);
    o.members = 1 + static_cast<unsigned>(rng() % 8);
    o.staging = 2 * o.alignment * (1 + rng() % 24);
    const unsigned files = 1 + static_cast<unsigned>(rng() % 3);
    std::vector<Need> needs;
    for (unsigned f = 0; f < files; ++f) {
      const std::uint64_t size = 1 + rng() % 60000;
      o.file_sizes.push_back(size);
      const int n = static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) {
        Need x;
        x.file = f;
        x.offset = rng() % size;
        x.count = 1 + rng() % 5;
        x.stride = x.count > 1 ? 1 + rng() % 3000 : 0;
        const std::uint64_t room = size - x.offset;
        const std::uint64_t span = (x.count - 1) * x.stride;
        if (span >= room) {
          x.count = 1;
          x.stride = 0;
        }
        x.length = 1 + rng() % std::max<std::uint64_t>(1, room - (x.count - 1) * x.stride);
        if (x.count > 1) x.length = std::min(x.length, x.stride);
        if (x.offset + (x.count - 1) * x.stride + x.length > size) continue;
        needs.push_back(x);
      }
    }
    INFO("round " << round << " alignment " << o.alignment << " members " << o.members
                  << " staging " << o.staging);
    CheckSchedule(MakeSchedule(needs, o), needs, o);
  }
}

}  // namespace
}  // namespace shardload::test
