#!/usr/bin/python3
"""bench_ab.py: two shardload binaries against each other, interleaved in one
run (perf/, never run by CTest), for "no speed regression" checks of a change.

  perf/bench_ab.py OLD_SHARDLOAD NEW_SHARDLOAD CHECKPOINT [--reps 5]

Each repetition runs every case with both binaries back to back (the order
alternates between repetitions), the checkpoint read into the page cache
before each run: the whole load's first load (the library's own `seconds`),
its steady reloads (`--repeat 4`, `steady_gb_per_s`), `--direct`, one rank of
8 under `--plan hf`, and 4 ranks cooperating under a torchrun-like
environment (wall time until the last exits). Prints each case's median per
binary, new/old, and every run. Standard library only.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import time


def load(binary, checkpoint, extra):
    out = subprocess.run([binary, "load", checkpoint, "--json", *extra], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cooperate(binary, checkpoint, ranks, job):
    start = time.monotonic()
    procs = []
    for r in range(ranks):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(ranks), LOCAL_RANK=str(r),
                   LOCAL_WORLD_SIZE=str(ranks), TORCHELASTIC_RUN_ID=job)
        procs.append(subprocess.Popen([binary, "load", checkpoint, "--plan", "hf", "--json"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(err.decode())
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("checkpoint")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    ckpt = args.checkpoint
    cases = {
        "warm first load, s": lambda b: load(b, ckpt, [])["seconds"],
        "warm steady reload, GB/s": lambda b: load(b, ckpt, ["--repeat", "4"])["steady_gb_per_s"],
        "--direct first load, s": lambda b: load(b, ckpt, ["--direct"])["seconds"],
        "rank 3 of 8, --plan hf, warm, s":
            lambda b: load(b, ckpt, ["--rank", "3", "--world", "8", "--plan", "hf"])["seconds"],
        "4 cooperating ranks, warm, s":
            lambda b: cooperate(b, ckpt, 4, f"bench-ab-{os.getpid()}-{time.monotonic_ns()}"),
    }
    shards = sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))
    runs = {case: {"old": [], "new": []} for case in cases}
    for rep in range(args.reps):
        order = [("old", args.old), ("new", args.new)]
        if rep % 2:
            order.reverse()
        for case, run in cases.items():
            for label, binary in order:
                subprocess.run(["cat", *shards], stdout=subprocess.DEVNULL, check=True)
                runs[case][label].append(run(binary))
    print(f"{'case':34s} {'old':>8s} {'new':>8s} {'new/old':>8s}  runs: old | new")
    for case, r in runs.items():
        old, new = statistics.median(r["old"]), statistics.median(r["new"])
        print(f"{case:34s} {old:8.3f} {new:8.3f} {new / old:8.2f}  "
              + " ".join(f"{x:.2f}" for x in r["old"]) + " | "
              + " ".join(f"{x:.2f}" for x in r["new"]))


if __name__ == "__main__":
    main()
