#!/usr/bin/env python3
"""bench_verify.py: `shardload verify` against one `sha256sum` process and the
machine's hash limit (shardload_hash_limit), `load --verify` against `verify`
and `load --dtype F32` against a plain load, interleaved, warm (every contender
reads the same files, which stay in the page cache once read). Not a test.

Each repetition runs, in this order: sha256sum over the shards; verify (auto:
hashed from a mapping for files mostly in the page cache, else O_DIRECT),
verify --copy (cached files copied by read() instead), verify --buffered,
verify --direct; hash_limit; then on SUBSET (the --load-shards largest shards, as symlinks in a
directory of their own, so that the loads fit in memory): verify, load,
load --verify, load --dtype F32, and the steady state of load --repeat 3 with
and without --verify (reloads into memory already faulted in). Reported per contender: median, min and max
of the wall-clock GB/s and of the GB per CPU-second of the process (user +
system, from getrusage of the children) -- on a machine shared with other
work the wall-clock figures drop, the CPU ones much less.

With --baseline BINARY (an older build of the CLI), its verify and
load --verify run too, interleaved (before/after in one run).

With --verify-only, each repetition runs only verify (cached files hashed
from a mapping), verify --copy (copied by read()), the baseline's verify and
hash_limit: no sha256sum, no O_DIRECT and no loads.

    /usr/bin/python3 perf/bench_verify.py --checkpoint /work/perf-data/llama8g --reps 3
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time


def run(cmd):
    """Runs CMD; returns (stdout, wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, wall, cpu


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def summary(values):
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="/work/perf-data/llama8g")
    p.add_argument("--shardload", default="build/tools/shardload")
    p.add_argument("--hash-limit", default="build/perf/shardload_hash_limit")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--load-shards", type=int, default=1)
    p.add_argument("--out", default="build/bench-verify.json")
    p.add_argument("--baseline", default="", help="an older shardload CLI to interleave")
    p.add_argument("--verify-only", action="store_true",
                   help="only verify (mapped, --copy, baseline) and hash_limit")
    a = p.parse_args()
    shards = sorted(os.path.join(a.checkpoint, f) for f in os.listdir(a.checkpoint)
                    if f.endswith(".safetensors"))
    total = sum(os.path.getsize(f) for f in shards)
    subset_dir = tempfile.mkdtemp(prefix="bench-verify-")
    subset = sorted(shards, key=os.path.getsize, reverse=True)[:a.load_shards]
    for f in subset:
        os.symlink(f, os.path.join(subset_dir, os.path.basename(f)))
    subset_bytes = sum(os.path.getsize(f) for f in subset)
    manifest = os.path.join(subset_dir, "..", os.path.basename(subset_dir) + ".sha256")
    out, _, _ = run([a.shardload, "verify", subset_dir])
    with open(manifest, "w") as f:
        f.write(out)
    # Warm the page cache once.
    subprocess.run(["sh", "-c", 'cat "$@" > /dev/null', "sh"] + shards, check=True)
    results = {k: {"wall": [], "cpu": []} for k in
               ["sha256sum", "verify", "verify_copy", "verify_buffered", "verify_direct",
                "base_verify",
                "hash_limit", "hash_memory", "subset_verify", "subset_load",
                "subset_load_verify", "base_subset_load_verify", "subset_load_dtype_f32",
                "subset_reload", "subset_reload_verify"]}

    def record(name, nbytes, wall, cpu):
        results[name]["wall"].append(nbytes / wall / 1e9)
        results[name]["cpu"].append(nbytes / cpu / 1e9 if cpu > 0 else 0)

    for rep in range(a.reps):
        if not a.verify_only:
            _, wall, cpu = run(["sha256sum"] + shards)
            record("sha256sum", total, wall, cpu)
        _, wall, cpu = run([a.shardload, "verify", a.checkpoint])
        record("verify", total, wall, cpu)
        _, wall, cpu = run([a.shardload, "verify", a.checkpoint, "--copy"])
        record("verify_copy", total, wall, cpu)
        if not a.verify_only:
            _, wall, cpu = run([a.shardload, "verify", a.checkpoint, "--buffered"])
            record("verify_buffered", total, wall, cpu)
            _, wall, cpu = run([a.shardload, "verify", a.checkpoint, "--direct"])
            record("verify_direct", total, wall, cpu)
        if a.baseline:
            _, wall, cpu = run([a.baseline, "verify", a.checkpoint])
            record("base_verify", total, wall, cpu)
        out, _, _ = run([a.hash_limit, "--seconds", "2"])
        limit = json.loads(out)
        results["hash_limit"]["wall"].append(limit["all_wall_gb_per_s"])
        results["hash_limit"]["cpu"].append(limit["limit_gb_per_s"])
        # One thread hashing bytes in memory, not in cache: plain and prefetched.
        results["hash_memory"]["wall"].append(limit["memory_cpu_gb_per_s"])
        results["hash_memory"]["cpu"].append(limit["memory_prefetched_cpu_gb_per_s"])
        if a.verify_only:
            print(f"rep {rep + 1}/{a.reps} done", flush=True)
            continue
        _, wall, cpu = run([a.shardload, "verify", subset_dir])
        record("subset_verify", subset_bytes, wall, cpu)
        out, wall, cpu = run([a.shardload, "load", subset_dir, "--json"])
        record("subset_load", last_json(out)["bytes"], wall, cpu)
        out, wall, cpu = run([a.shardload, "load", subset_dir, "--verify", manifest, "--json"])
        record("subset_load_verify", last_json(out)["bytes"], wall, cpu)
        if a.baseline:
            out, wall, cpu = run([a.baseline, "load", subset_dir, "--verify", manifest, "--json"])
            record("base_subset_load_verify", last_json(out)["bytes"], wall, cpu)
        out, wall, cpu = run([a.shardload, "load", subset_dir, "--dtype", "F32", "--json"])
        record("subset_load_dtype_f32", last_json(out)["bytes"], wall, cpu)
        # Steady state: reloads into memory already faulted in (--repeat 3,
        # the median of the 2 reloads; wall-clock only).
        out, _, _ = run([a.shardload, "load", subset_dir, "--repeat", "3", "--json"])
        results["subset_reload"]["wall"].append(last_json(out)["steady_gb_per_s"])
        results["subset_reload"]["cpu"].append(0)
        out, _, _ = run([a.shardload, "load", subset_dir, "--repeat", "3", "--verify", manifest,
                         "--json"])
        results["subset_reload_verify"]["wall"].append(last_json(out)["steady_gb_per_s"])
        results["subset_reload_verify"]["cpu"].append(0)
        print(f"rep {rep + 1}/{a.reps} done", flush=True)
    report = {"checkpoint": a.checkpoint, "bytes": total, "subset_bytes": subset_bytes,
              "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
              "gb_per_s": {k: {"wall": summary(v["wall"]), "per_cpu_second": summary(v["cpu"])}
                           for k, v in results.items() if v["wall"]},
              "raw": results}
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report["gb_per_s"], indent=1))
    print("loadavg", report["loadavg"])


if __name__ == "__main__":
    main()
