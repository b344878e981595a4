// The load engine on the io_uring backend, checked byte for byte against the
// pread oracle of load_harness. Every case is skipped (at registration) when
// io_uring cannot be set up here.
#include <doctest/doctest.h>

#include <cstdio>

#include "io/capabilities.h"
#include "io/load_harness.h"

namespace shardload::test {
namespace {

bool NoIoUring() {
  static const bool missing = [] {
    Capabilities caps = ProbeCapabilities();
    if (!caps.io_uring) {
      std::fprintf(stderr, "io_uring tests skipped: %s\n", caps.io_uring_reason.c_str());
    }
    return !caps.io_uring;
  }();
  return missing;
}

TEST_CASE("io_uring: buffered into library memory" * doctest::skip(NoIoUring())) {
  CheckLoadMatrix(Backend::kIoUring, false, false);
}
TEST_CASE("io_uring: buffered into caller buffers" * doctest::skip(NoIoUring())) {
  CheckLoadMatrix(Backend::kIoUring, false, true);
}
TEST_CASE("io_uring: O_DIRECT into library memory" * doctest::skip(NoIoUring())) {
  CheckLoadMatrix(Backend::kIoUring, true, false);
}
TEST_CASE("io_uring: O_DIRECT into caller buffers" * doctest::skip(NoIoUring())) {
  CheckLoadMatrix(Backend::kIoUring, true, true);
}
TEST_CASE("io_uring: error paths, buffered" * doctest::skip(NoIoUring())) {
  CheckErrorPaths(Backend::kIoUring, false);
}
TEST_CASE("io_uring: error paths, O_DIRECT" * doctest::skip(NoIoUring())) {
  CheckErrorPaths(Backend::kIoUring, true);
}
TEST_CASE("io_uring: reload, buffered" * doctest::skip(NoIoUring())) {
  CheckReload(Backend::kIoUring, false);
}
TEST_CASE("io_uring: reload, O_DIRECT" * doctest::skip(NoIoUring())) {
  CheckReload(Backend::kIoUring, true);
}

TEST_CASE("io_uring: auto picks io_uring and says why" * doctest::skip(NoIoUring())) {
  auto loader = Loader::Open(SharedFixture().checkpoint, {});
  REQUIRE(loader);
  auto loaded = loader->Load();
  REQUIRE(loaded);
  CHECK(loaded->stats().backend == Backend::kIoUring);
  CHECK(loaded->stats().backend_reason.find("io_uring available") != std::string::npos);
}

}  // namespace
}  // namespace shardload::test
