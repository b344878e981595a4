// Destination memory: MappedMemory (alignment, zeroed, unmapped on
// destruction) and the huge-page monitor's bookkeeping.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>

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

TEST_CASE("FaultInPolicy: samples whole huge pages, and reports what it did") {
  auto mem = MappedMemory::Map(64 << 20, /*huge_pages=*/true);
  REQUIRE(mem);
  FaultInPolicy monitor(mem->data(), mem->size(), /*huge_pages=*/true);
  // The first call samples (the huge page after the read, here).
  monitor.BeforeRead(mem->data() + 4096, 8192);
  // The schedule: the first read and one per kSampleEvery bytes.
  for (std::size_t off = 0; off + (4 << 20) <= mem->size(); off += 4 << 20) {
    monitor.BeforeRead(mem->data() + off, 4 << 20);
  }
  std::string what = monitor.Describe();
  if (monitor.gave_up_huge_pages()) {
    CHECK(what.find("4 KiB pages") != std::string::npos);
  } else {
    CHECK(what.find("transparent huge pages") != std::string::npos);
    CHECK(what.find(" of 5 timed") != std::string::npos);  // first + 64 MiB / 16 MiB
  }
  for (std::size_t i = 0; i < mem->size(); i += 1 << 20) CHECK(mem->data()[i] == std::byte{0});
}

TEST_CASE("FaultInPolicy: 4 KiB pages are populated before each read") {
  auto mem = MappedMemory::Map(1 << 20, /*huge_pages=*/false);
  REQUIRE(mem);
  FaultInPolicy policy(mem->data(), mem->size(), /*huge_pages=*/false);
  policy.BeforeRead(mem->data() + 5, 300000);
  CHECK(mem->data()[6] == std::byte{0});
  CHECK(policy.Describe().find("huge_pages off") != std::string::npos);
  CHECK(!policy.gave_up_huge_pages());
}

}  // namespace
}  // namespace shardload
