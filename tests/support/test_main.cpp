// doctest main for every test executable: prints the random seed in use and
// accepts it back through SHARDLOAD_TEST_SEED so that failures reproduce.
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
  return context.run();
}
