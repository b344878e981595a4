#!/usr/bin/env bash
# The CPU targets of issues 11, 12 and 17 on a machine with more cores than
# the 2-vCPU development VMs (e.g. the 16-core device machine when one is
# lent), in one go, every step under a timeout (about 8 minutes in all):
#   perf/manycore_check.sh [CHECKPOINT_DIR]
# 1. builds $BUILD (default build-gpu, shared with perf/gpu_check.sh) unless
#    it has the CLI and shardload_hash_limit;
# 2. generates a ~8 GB Llama-like checkpoint (with config.json) unless given;
# 3. issue 11: perf/bench_tp_read.py, rank 3 of 8 (hf plan) against the whole
#    checkpoint, strategies auto and mapped, warm and --direct;
# 4. issue 12: perf/bench_coop.py, 8 ranks launched by environment against
#    one full load, warm and cold --direct (the checkpoint's pages evicted
#    with posix_fadvise only);
# 5. issue 17: perf/bench_verify.py (verify against sha256sum and the hash
#    limit, load --verify against verify, load --dtype F32).
# Results: $OUT (default ./manycore-out): machine.txt, one log per step and
# the benchmarks' JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-manycore-out}
mkdir -p "$OUT"
{ nproc; grep -m1 'model name' /proc/cpuinfo; free -g | sed -n 2p; uname -r; } | tee "$OUT/machine.txt"
if [ ! -x "$BUILD/tools/shardload" ] || [ ! -x "$BUILD/perf/shardload_hash_limit" ]; then
  timeout 300 sh -c "cmake -S . -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release > '$OUT/build.log' 2>&1 &&
    cmake --build '$BUILD' >> '$OUT/build.log' 2>&1" || { echo "build failed"; exit 1; }
fi
SL="$BUILD/tools/shardload"
CKPT=${1:-$OUT/llama8g}
if [ ! -f "$CKPT/config.json" ]; then
  timeout 180 "$SL" generate "$CKPT" --size 8GB > "$OUT/generate.log" 2>&1 ||
    { echo "generate failed"; exit 1; }
fi
step() {  # NAME TIMEOUT COMMAND...
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc=$?"
  tail -n 25 "$OUT/$name.log"
}
step tp-read 150 python3 perf/bench_tp_read.py "$CKPT" --shardload "$SL" --reps 2 --repeat 3 \
  --strategies auto,mapped --out "$OUT/tp-read.json"
step coop 200 python3 perf/bench_coop.py --dir "$CKPT" --shardload "$SL" --reps 2 --ranks 8 \
  --states warm cold-direct --out "$OUT/coop.json"
step verify 150 python3 perf/bench_verify.py --checkpoint "$CKPT" --shardload "$SL" \
  --hash-limit "$BUILD/perf/shardload_hash_limit" --reps 2 --out "$OUT/verify.json"
