#!/usr/bin/env python3
"""The read-mode benchmark (issue 11, "the default mode follows the page
cache"): `shardload load` in its default (auto) mode against the forced modes,
in both page-cache states, interleaved in one run:

  cold: default (auto) vs --direct      target: auto >= 0.9x direct
  warm: default (auto) vs --buffered    target: auto >= 0.95x buffered

"Cold" evicts only the checkpoint's files (posix_fadvise DONTNEED; the page
cache is shared with others, so the whole machine's cache is never dropped).
"Warm" first loads the same tensors with --buffered (so only the selected
ranges are cached). --select (repeatable) loads a part of the checkpoint, for
machines where the whole of it and a loaded copy do not fit in memory. For every run the
block device's read bytes (/proc/diskstats, the device holding the files) are
recorded. The order of the four contenders rotates with the repetition.
Prints the median, min and max GB/s and the per-repetition ratios; writes
everything (raw JSON of each run) to --out.

  python3 perf/bench_mode.py --dir /work/perf-data/llama8g \\
      --shardload build-release/tools/shardload --reps 5 [--select GLOB]...
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONTENDERS = [  # key, cache state, flags
    ("cold_auto", "cold", []),
    ("cold_direct", "cold", ["--direct"]),
    ("warm_auto", "warm", []),
    ("warm_buffered", "warm", ["--buffered"]),
]
RATIOS = [  # label, numerator, denominator, target
    ("cold: default / --direct", "cold_auto", "cold_direct", 0.9),
    ("warm: default / --buffered", "warm_auto", "warm_buffered", 0.95),
]


def log(message):
    print(message, file=sys.stderr, flush=True)


def shard_files(directory):
    return sorted(os.path.join(directory, f) for f in os.listdir(directory)
                  if f.endswith(".safetensors"))


def selection_flags(args):
    return [f for glob in args.select for f in ("--select", glob)]


def evict(files):
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(args):
    run_load(args, ["--buffered"])


def disk_of(path):
    """The /proc/diskstats name of the device holding PATH."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if int(fields[0]) == major and int(fields[1]) == minor:
                return fields[2]
    return None


def disk_read_bytes(disk):
    """Bytes read from DISK so far (sectors read x 512); 0 if unknown."""
    if disk is None:
        return 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == disk:
                return int(fields[5]) * 512
    return 0


def run_load(args, flags):
    cmd = [args.shardload, "load", args.dir, "--json"] + selection_flags(args) + flags
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_one(args, files, disk, key, state, flags):
    if state == "cold":
        evict(files)
    else:
        warm(args)
    before = disk_read_bytes(disk)
    r = run_load(args, flags)
    r["disk_read_bytes"] = disk_read_bytes(disk) - before
    log(f"  {key:<14} {r['gb_per_s']:6.2f} GB/s  mode {r.get('mode')}: "
        f"{r.get('bytes_direct', 0) / 1e9:.2f} GB direct, "
        f"{r.get('bytes_buffered', 0) / 1e9:.2f} GB buffered; "
        f"disk read {r['disk_read_bytes'] / 1e9:.2f} GB")
    return r


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/work/perf-data/llama8g")
    p.add_argument("--shardload", default="build-release/tools/shardload")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--select", action="append", default=[], metavar="GLOB")
    p.add_argument("--out", default="build-release/bench-mode.json")
    args = p.parse_args()
    files = shard_files(args.dir)
    disk = disk_of(files[0])
    log(f"{len(files)} shards, {sum(map(os.path.getsize, files)) / 1e9:.2f} GB; disk {disk}")
    runs = {key: [] for key, _, _ in CONTENDERS}
    for rep in range(args.reps):
        log(f"rep {rep + 1}/{args.reps}")
        shift = rep % len(CONTENDERS)
        for key, state, flags in CONTENDERS[shift:] + CONTENDERS[:shift]:
            runs[key].append(run_one(args, files, disk, key, state, flags))
    table = {key: summarize([r["gb_per_s"] for r in rs]) for key, rs in runs.items()}
    ratios = {}
    for label, num, den, target in RATIOS:
        per_rep = [a["gb_per_s"] / b["gb_per_s"] for a, b in zip(runs[num], runs[den])]
        ratios[label] = {"per_rep": per_rep, "target": target, **summarize(per_rep)}
    print(f"{'contender':<15} {'median':>8} {'min':>8} {'max':>8}  GB/s   disk GB (median)")
    for key, _, _ in CONTENDERS:
        t = table[key]
        disk_gb = statistics.median(r["disk_read_bytes"] for r in runs[key]) / 1e9
        print(f"{key:<15} {t['median']:8.2f} {t['min']:8.2f} {t['max']:8.2f}   {disk_gb:8.2f}")
    for label, r in ratios.items():
        reps = " ".join(f"{x:.2f}" for x in r["per_rep"])
        print(f"{label}: median {r['median']:.2f} (min {r['min']:.2f}, max {r['max']:.2f}; "
              f"target >= {r['target']}) per rep: {reps}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   "args": vars(args), "table": table, "ratios": ratios, "runs": runs}, f,
                  indent=1)


if __name__ == "__main__":
    main()
