#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite: a normal
# build, then the packaged installs (tests/package/check_packages.sh: the
# .deb, `pip install .` and a wheel from one Release build;
# SHARDLOAD_TEST_PACKAGES=0 skips them), then ASan+UBSan and TSan builds
# (SHARDLOAD_TEST_SANITIZERS=0 skips those), then a short run of each
# libFuzzer target when tools/fuzz.sh is there (SHARDLOAD_FUZZ_SECONDS,
# default 20; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
jobs=$(nproc)

run_suite() {  # run_suite BUILD_DIR [cmake args...]
  local dir=$1
  shift
  BUILD_DIR=$dir tools/build.sh -DSHARDLOAD_BUILD_PERF=OFF "$@"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs"
}

run_suite build
if [ "${SHARDLOAD_TEST_PACKAGES:-1}" != 0 ]; then
  tests/package/check_packages.sh
fi
if [ "${SHARDLOAD_TEST_SANITIZERS:-1}" != 0 ]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-asan -DSHARDLOAD_SANITIZE=address
  TSAN_OPTIONS=halt_on_error=1 run_suite build-tsan -DSHARDLOAD_SANITIZE=thread
fi
fuzz_seconds=${SHARDLOAD_FUZZ_SECONDS:-20}
if [ -x tools/fuzz.sh ] && [ "$fuzz_seconds" != 0 ]; then
  tools/fuzz.sh "$fuzz_seconds"
fi
