#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang, ASan and UBSan into
# BUILD_DIR (default build-fuzz) and runs each for SECONDS (default 60),
# seeded from tests/corpus and, where present, the real files in
# ../shared/research. Fails on any finding; the input that caused it is left
# in BUILD_DIR/findings/ and the log in BUILD_DIR/fuzz-logs/.
#
# Usage: tools/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_TARGETS   targets to run (default: every fuzz_* target that builds)
#   FUZZ_ARGS      extra libFuzzer flags, e.g. "-runs=10000000 -max_len=8192"
#   BUILD_JOBS     parallel compile jobs (default 2)
#   SHARDLOAD_SHARED_DIR  the shared fixtures (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build_dir=${BUILD_DIR:-build-fuzz}
shared_dir=${SHARDLOAD_SHARED_DIR:-../shared}

# clang and its libFuzzer runtime (Debian 12: clang 14, libclang-rt-14-dev).
have_libfuzzer() {
  local probe
  probe=$(mktemp -d)
  echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' \
    >"$probe/probe.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" \
    >/dev/null 2>&1
  local rc=$?
  rm -rf "$probe"
  return $rc
}

install_clang() {
  command -v clang++ >/dev/null 2>&1 && have_libfuzzer && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: clang libclang-rt-14-dev"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clang libclang-rt-14-dev
  have_libfuzzer || { echo "fuzz.sh: clang cannot link -fsanitize=fuzzer" >&2; exit 1; }
}

configure_and_build() {
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSHARDLOAD_FUZZ=ON -DSHARDLOAD_SANITIZE=address \
    -DSHARDLOAD_BUILD_TOOLS=OFF -DSHARDLOAD_BUILD_PERF=OFF >/dev/null
  if [ -z "${FUZZ_TARGETS:-}" ]; then
    FUZZ_TARGETS=$(cmake --build "$build_dir" --target help | grep -o '^fuzz_[a-z_]*' | sort -u |
                   tr '\n' ' ')
  fi
  # shellcheck disable=SC2086
  cmake --build "$build_dir" -j"${BUILD_JOBS:-2}" --target $FUZZ_TARGETS
}

# The seed directories of a target: ours, then the shared real files.
seed_dirs() {
  case "$1" in
    fuzz_header) echo "tests/corpus/header"
                 [ -d "$shared_dir/research/real-files" ] &&
                   echo "$shared_dir/research/real-files" "$shared_dir/research/real-files/hostile"
                 ;;
    fuzz_index)  echo "tests/corpus/index"
                 [ -d "$shared_dir/research/real-index" ] && echo "$shared_dir/research/real-index"
                 ;;
    fuzz_plan)   echo "tests/corpus/plan" ;;
  esac
  return 0
}

# Runs one target; the new inputs it finds go to BUILD_DIR/corpus/TARGET.
run_target() {
  local target=$1 name=${1#fuzz_}
  local corpus="$build_dir/corpus/$target" log="$build_dir/fuzz-logs/$target.log"
  mkdir -p "$corpus" "$build_dir/findings" "$build_dir/fuzz-logs"
  echo "== $target: ${seconds}s"
  # shellcheck disable=SC2046,SC2086
  if ! "$build_dir/tests/fuzz/$target" "$corpus" $(seed_dirs "$target") \
      -dict="tests/fuzz/$name.dict" -max_total_time="$seconds" -timeout=25 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build_dir/findings/$target-" ${FUZZ_ARGS:-} >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz.sh: $target found a problem; input in $build_dir/findings/, log in $log" >&2
    return 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
    "$log" || true
}

tools/install-deps.sh
install_clang
configure_and_build
failed=0
for target in $FUZZ_TARGETS; do
  run_target "$target" || failed=1
done
exit $failed
