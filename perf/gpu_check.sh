#!/usr/bin/env bash
# The GPU run of issue 14 in one go (docs/device.md, "On a GPU machine"):
#   perf/gpu_check.sh [CHECKPOINT_DIR]
# 1. uses $BUILD (default build-gpu) if it holds tools/shardload and the
#    Python module, else configures and builds it (Release, tests on);
# 2. runs the device test suites (fake runtime) and the CLI against the
#    real runtime (a cuda:0 load, a missing device refused);
# 3. generates a ~8 GB Llama-like checkpoint unless one is given, then runs
#    perf/gpu_check.py: byte-exact against safetensors.torch.load_file on
#    cuda:0 (whole, rank 1 of 8) and the speed against the pinned copy limit
#    and safetensors, warm page cache.
# Results: $OUT (default ./gpu-out)/gpu-check.json and the logs beside it.
# Set LD_LIBRARY_PATH=$BUILD/runtime-libs first when the build came from
# another machine with its shared libraries (tbb, uring, fmt, re2).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-gpu-out}
SIZE=${SIZE:-8GB}
mkdir -p "$OUT"
[ -d "$BUILD/runtime-libs" ] && export LD_LIBRARY_PATH="$PWD/$BUILD/runtime-libs:${LD_LIBRARY_PATH:-}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import sys, torch, safetensors; print(sys.version.split()[0], torch.__version__, torch.version.cuda, safetensors.__version__)'
} 2>&1 | tee "$OUT/machine.txt"

if [ ! -x "$BUILD/tools/shardload" ] || ! ls "$BUILD"/python/shardload/_shardload*.so >/dev/null 2>&1; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDLOAD_WERROR=OFF \
    > "$OUT/build.log" 2>&1 && cmake --build "$BUILD" >> "$OUT/build.log" 2>&1 ||
    { echo "build failed: $OUT/build.log"; tail -20 "$OUT/build.log"; exit 1; }
fi
SL="$BUILD/tools/shardload"
export PYTHONPATH="$PWD/$BUILD/python"

if command -v ctest >/dev/null && [ -f "$BUILD/CTestTestfile.cmake" ]; then
  ctest --test-dir "$BUILD" -R 'device|loader_tp|cli_test' -j 8 > "$OUT/ctest.log" 2>&1
  echo "fake-runtime suites: rc=$? ($(tail -n 1 "$OUT/ctest.log"))"
fi

CKPT=${1:-$OUT/llama8g}
if [ ! -f "$CKPT/config.json" ]; then
  "$SL" generate "$CKPT" --size "$SIZE" > "$OUT/generate.log" 2>&1 || { echo "generate failed"; exit 1; }
fi
"$SL" load "$CKPT" --device cuda:0 --json > "$OUT/cli-load.json" 2>&1
echo "cli load cuda:0: rc=$? $(tail -c 400 "$OUT/cli-load.json")"
"$SL" load "$CKPT" --device cuda:0 --rank 1 --world 8 --plan hf --json > "$OUT/cli-rank.json" 2>&1
echo "cli rank 1/8 cuda:0: rc=$? $(tail -c 300 "$OUT/cli-rank.json")"
"$SL" load "$CKPT" --device cuda:99 --select '**.norm.weight' --json > "$OUT/cli-missing.json" 2>&1
echo "cli cuda:99: rc=$? (want 7) $(tail -c 300 "$OUT/cli-missing.json")"

python3 perf/gpu_check.py "$CKPT" --out "$OUT/gpu-check.json" --reps "${REPS:-3}" 2> "$OUT/gpu-check.log"
rc=$?
tail -n 20 "$OUT/gpu-check.log"
exit $rc
