// doctest main for every test executable: prints the random seed in use and
// accepts it back through SHARDLOAD_TEST_SEED so that failures reproduce;
// exits 77 (skipped) when a case skipped itself for want of ../shared.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "support/test_util.h"

namespace shardload::test {

std::uint64_t Seed() {
  static const std::uint64_t seed = []() -> std::uint64_t {
    if (const char* s = std::getenv("SHARDLOAD_TEST_SEED")) return std::strtoull(s, nullptr, 0);
    return static_cast<std::uint64_t>(std::random_device{}());
  }();
  return seed;
}

}  // namespace shardload::test

int main(int argc, char** argv) {
  std::fprintf(stderr, "SHARDLOAD_TEST_SEED=%llu\n",
               static_cast<unsigned long long>(shardload::test::Seed()));
  doctest::Context context(argc, argv);
  int rc = context.run();
  // 77: CTest's SKIP_RETURN_CODE, for a case that needed ../shared.
  if (rc == 0 && !context.shouldExit() && shardload::test::SkippedCases() > 0) return 77;
  return rc;
}
