// Destination memory: MappedMemory (alignment, zeroed, unmapped on
// destruction) and the huge-page monitor's bookkeeping.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "buffers/fault_in_policy.h"
#include "buffers/mapped_memory.h"

namespace shardload {
namespace {

TEST_CASE("MappedMemory: huge-page mappings are 2 MiB aligned, zeroed, movable") {
  auto mem = MappedMemory::Map(5 << 20, /*huge_pages=*/true);
  REQUIRE(mem);
  CHECK(reinterpret_cast<std::uintptr_t>(mem->data()) % kHugePageSize == 0);
  CHECK(mem->size() >= (5u << 20));
  CHECK(mem->data()[12345] == std::byte{0});
  PrefaultForWrite(mem->data() + 100, 3 << 20);
  CHECK(mem->data()[200] == std::byte{0});  // populating does not change contents
  MappedMemory moved = std::move(*mem);
  CHECK(mem->data() == nullptr);
  CHECK(moved.data() != nullptr);
  auto empty = MappedMemory::Map(0, true);
  REQUIRE(empty);
  CHECK(empty->data() == nullptr);
}

// Sample durations for the scripted timer, consumed in order.
std::vector<double> scripted_samples;
std::size_t next_sample = 0;
double ScriptedTimer(std::byte*) { return scripted_samples.at(next_sample++); }

// Reads the arena front to back in 4 MiB steps, as one worker would.
void ReadThrough(FaultInPolicy& policy, std::byte* data, std::size_t size) {
  for (std::size_t off = 0; off < size; off += 4 << 20) {
    policy.BeforeRead(data + off, std::min<std::size_t>(4 << 20, size - off));
  }
}

std::string RegionPages(const FaultInPolicy& policy) {
  std::string out;
  for (std::size_t r = 0; r < policy.regions(); ++r) {
    out += policy.region_pages(r) == FaultInPolicy::Pages::kSmall ? 's' : 'h';
  }
  return out;
}

TEST_CASE("FaultInPolicy: each region is decided by its sample and the recent ones") {
  constexpr double kSlow = 5e-3, kFast = 1e-4;
  const std::size_t size = 7 * FaultInPolicy::kRegionSize;
  auto mem = MappedMemory::Map(size, /*huge_pages=*/true);
  REQUIRE(mem);
  SUBCASE("all fast: huge pages everywhere") {
    scripted_samples.assign(7, kFast);
  }
  SUBCASE("all slow: 4 KiB pages everywhere") {
    scripted_samples.assign(7, kSlow);
  }
  SUBCASE("mixed: a slow sample switches its region only when most recent ones were slow") {
    scripted_samples = {kSlow, kFast, kFast, kSlow, kSlow, kSlow, kFast};
  }
  next_sample = 0;
  FaultInPolicy policy(mem->data(), size, /*huge_pages=*/true, &ScriptedTimer);
  REQUIRE(policy.regions() == 7);
  ReadThrough(policy, mem->data(), size);
  CHECK(next_sample == 7);  // one sample per region, however many reads
  // The expected decisions, from the rule: slow, and slow in more than half
  // of the last min(samples, 5).
  std::string expected;
  unsigned window_bits = 0;
  for (std::size_t i = 0; i < scripted_samples.size(); ++i) {
    const bool slow = scripted_samples[i] >= FaultInPolicy::kSlowSeconds;
    window_bits = ((window_bits << 1) | (slow ? 1u : 0u)) & 0x1f;
    const auto n = static_cast<int>(std::min<std::size_t>(i + 1, 5));
    expected += slow && 2 * std::popcount(window_bits) > n ? 's' : 'h';
  }
  CHECK(RegionPages(policy) == expected);
  const std::string what = policy.Describe();
  CHECK(what.find(" of 7 timed") != std::string::npos);
  const auto small = std::count(expected.begin(), expected.end(), 's');
  if (small > 0) CHECK(what.find(std::to_string(small) + " of 7 64 MiB regions") != std::string::npos);
  // Populating 4 KiB-page regions leaves the zeroed contents alone.
  for (std::size_t i = 0; i < size; i += 1 << 20) REQUIRE(mem->data()[i] == std::byte{0});
}

TEST_CASE("FaultInPolicy: the mixed script gives the documented decisions") {
  // Spelled out once, independent of the rule's restatement above.
  constexpr double kSlow = 5e-3, kFast = 1e-4;
  scripted_samples = {kSlow, kFast, kFast, kSlow, kSlow, kSlow};
  next_sample = 0;
  const std::size_t size = 6 * FaultInPolicy::kRegionSize;
  auto mem = MappedMemory::Map(size, /*huge_pages=*/true);
  REQUIRE(mem);
  FaultInPolicy policy(mem->data(), size, /*huge_pages=*/true, &ScriptedTimer);
  ReadThrough(policy, mem->data(), size);
  CHECK(RegionPages(policy) == "shhhss");
}

TEST_CASE("FaultInPolicy: real samples on a small arena, contents untouched") {
  auto mem = MappedMemory::Map(3 * FaultInPolicy::kRegionSize / 2, /*huge_pages=*/true);
  REQUIRE(mem);
  FaultInPolicy policy(mem->data(), mem->size(), /*huge_pages=*/true);
  policy.BeforeRead(mem->data() + 4096, 8192);  // decides region 0 only
  CHECK(policy.region_pages(0) != FaultInPolicy::Pages::kUndecided);
  CHECK(policy.region_pages(1) == FaultInPolicy::Pages::kUndecided);
  ReadThrough(policy, mem->data(), mem->size());
  CHECK(policy.Describe().find(" of 2 timed") != std::string::npos);
  for (std::size_t i = 0; i < mem->size(); i += 1 << 20) CHECK(mem->data()[i] == std::byte{0});
}

TEST_CASE("FaultInPolicy: 4 KiB pages are populated before each read") {
  auto mem = MappedMemory::Map(1 << 20, /*huge_pages=*/false);
  REQUIRE(mem);
  FaultInPolicy policy(mem->data(), mem->size(), /*huge_pages=*/false);
  policy.BeforeRead(mem->data() + 5, 300000);
  CHECK(mem->data()[6] == std::byte{0});
  CHECK(policy.Describe().find("huge_pages off") != std::string::npos);
  CHECK(policy.regions() == 0);
}

}  // namespace
}  // namespace shardload
