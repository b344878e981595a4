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
#    and safetensors, warm page cache;
# 4. GPUDirect Storage (same python run, GDS=also; GDS=only skips steps 2-3
#    and the staged checks, GDS=off skips it): a --gds --direct load
#    byte-exact against safetensors, then --direct loads with and without
#    --gds interleaved, page cache dropped before each (posix_fadvise on the
#    checkpoint's files only). Without libcufile the loads fall back and
#    gpu-check.json's gds.transfer says why.
# 5. (not with GDS=only) 8 ranks under a torchrun-like environment load their
#    slices to cuda:0 cooperating through the node's staging
#    (perf/gpu_coop_check.py), each compared with its host load; wall time.
# Each step has a timeout (the whole run is meant to fit one 10-minute
# device command: BUILD_TIMEOUT 300, CHECK_TIMEOUT 240 by default).
# Results: $OUT (default ./gpu-out)/gpu-check.json and the logs beside it.
# Set LD_LIBRARY_PATH=$BUILD/runtime-libs first when the build came from
# another machine with its shared libraries (tbb, uring, fmt, re2).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-gpu-out}
SIZE=${SIZE:-8GB}
GDS=${GDS:-also}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-300}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-240}
mkdir -p "$OUT"
[ -d "$BUILD/runtime-libs" ] && export LD_LIBRARY_PATH="$PWD/$BUILD/runtime-libs:${LD_LIBRARY_PATH:-}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import sys, torch, safetensors; print(sys.version.split()[0], torch.__version__, torch.version.cuda, safetensors.__version__)'
  echo "libcufile: $(ldconfig -p 2>/dev/null | grep -o 'libcufile.so[.0-9]*' | head -1 || true)"
  lsmod 2>/dev/null | grep -E '^nvidia_fs' || echo "nvidia_fs module: not loaded"
} 2>&1 | tee "$OUT/machine.txt"

if [ ! -x "$BUILD/tools/shardload" ] || ! ls "$BUILD"/python/shardload/_shardload*.so >/dev/null 2>&1; then
  timeout "$BUILD_TIMEOUT" sh -c "cmake -S . -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSHARDLOAD_WERROR=OFF && cmake --build '$BUILD'" > "$OUT/build.log" 2>&1 ||
    { echo "build failed: $OUT/build.log"; tail -20 "$OUT/build.log"; exit 1; }
fi
SL="$BUILD/tools/shardload"
export PYTHONPATH="$PWD/$BUILD/python"

if [ "$GDS" != only ] && command -v ctest >/dev/null && [ -f "$BUILD/CTestTestfile.cmake" ]; then
  timeout 120 ctest --test-dir "$BUILD" -R 'device|loader_tp|cli_test' -j 8 > "$OUT/ctest.log" 2>&1
  echo "fake-runtime suites: rc=$? ($(tail -n 1 "$OUT/ctest.log"))"
fi

CKPT=${1:-$OUT/llama8g}
if [ ! -f "$CKPT/config.json" ]; then
  timeout 180 "$SL" generate "$CKPT" --size "$SIZE" > "$OUT/generate.log" 2>&1 ||
    { echo "generate failed"; exit 1; }
fi
timeout 60 "$SL" load "$CKPT" --device cuda:0 --direct --gds --json > "$OUT/cli-gds.json" 2>&1
echo "cli load cuda:0 --direct --gds: rc=$? $(tail -c 400 "$OUT/cli-gds.json")"
if [ "$GDS" != only ]; then
timeout 60 "$SL" load "$CKPT" --device cuda:0 --json > "$OUT/cli-load.json" 2>&1
echo "cli load cuda:0: rc=$? $(tail -c 400 "$OUT/cli-load.json")"
timeout 60 "$SL" load "$CKPT" --device cuda:0 --rank 1 --world 8 --plan hf --json > "$OUT/cli-rank.json" 2>&1
echo "cli rank 1/8 cuda:0: rc=$? $(tail -c 300 "$OUT/cli-rank.json")"
timeout 60 "$SL" load "$CKPT" --device cuda:99 --select '**.norm.weight' --json > "$OUT/cli-missing.json" 2>&1
echo "cli cuda:99: rc=$? (want 7) $(tail -c 300 "$OUT/cli-missing.json")"
fi

if [ "$GDS" != only ]; then
  start=$(date +%s%N)
  for r in 0 1 2 3 4 5 6 7; do
    RANK=$r WORLD_SIZE=8 LOCAL_RANK=$r LOCAL_WORLD_SIZE=8 TORCHELASTIC_RUN_ID=gpu-check-$$ \
      timeout 120 python3 perf/gpu_coop_check.py "$CKPT" > "$OUT/coop-$r.json" 2> "$OUT/coop-$r.log" &
  done
  wait
  echo "cooperative 8 ranks to cuda:0: $(( ($(date +%s%N) - start) / 1000000 )) ms (each also loads alone to host)"
  cat "$OUT"/coop-*.json
fi

timeout "$CHECK_TIMEOUT" python3 perf/gpu_check.py "$CKPT" --out "$OUT/gpu-check.json" \
  --reps "${REPS:-3}" --gds "$GDS" 2> "$OUT/gpu-check.log"
rc=$?
tail -n 20 "$OUT/gpu-check.log"
exit $rc
