#!/usr/bin/python3
"""Tensor-parallel read benchmark (issue 11): one rank's steady-state load time
against the whole checkpoint's, warm and with --direct, per read strategy,
interleaved in one run. Not a test.

  perf/bench_tp_read.py CHECKPOINT [--world 8] [--rank 3] [--reps 3]
      [--shardload build-rel/tools/shardload] [--baseline OTHER_SHARDLOAD]
      [--strategies auto,exact,staged,mapped] [--modes warm,direct] [--select GLOB]...
      [--out FILE]

Each repetition runs, in order: the whole checkpoint (`load --repeat N`), then
rank R of W under `--plan hf` for each strategy (and with --baseline, another
build's whole and rank loads), first buffered (warm page cache), then the same with
--direct. Reported: the median steady-state seconds (median of the reloads
after the first load) per contender over the repetitions, min..max, the ratio
rank / whole, and the rank's read_ops and bytes_read.
"""
import argparse
import json
import statistics
import subprocess


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def steady_seconds(report):
    """Median seconds of the reloads after the first load."""
    rates = report.get("reload_gb_per_s") or []
    secs = [report["bytes"] / (r * 1e9) for r in rates if r > 0]
    return statistics.median(secs) if secs else report["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--world", type=int, default=8)
    ap.add_argument("--rank", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=4, help="--repeat of each load")
    ap.add_argument("--shardload", default="build-rel/tools/shardload")
    ap.add_argument("--baseline", help="another shardload binary, run for the rank too")
    ap.add_argument("--strategies", default="auto,exact,staged,mapped")
    ap.add_argument("--modes", default="warm,direct")
    ap.add_argument("--select", action="append", default=[],
                    help="--select GLOB for every load (repeatable): a part that fits the page cache")
    ap.add_argument("--out")
    a = ap.parse_args()
    contenders = [("whole", a.shardload, [])]
    tp = ["--plan", "hf", "--world", str(a.world), "--rank", str(a.rank)]
    for s in a.strategies.split(","):
        contenders.append((f"rank-{s}", a.shardload, tp + ["--read-strategy", s]))
    if a.baseline:
        contenders.insert(1, ("whole-baseline", a.baseline, []))
        contenders.append(("rank-baseline", a.baseline, tp))
    results = {}
    for rep in range(a.reps):
        for mode in a.modes.split(","):
            for name, binary, extra in contenders:
                cmd = [binary, "load", a.checkpoint, "--json", "--repeat", str(a.repeat)] + extra
                for g in a.select:
                    cmd += ["--select", g]
                if mode == "direct":
                    cmd.append("--direct")
                r = run(cmd)
                key = f"{mode}/{name}"
                results.setdefault(key, []).append(
                    {"steady_s": steady_seconds(r), "first_s": r["seconds"],
                     "read_ops": r["read_ops"], "bytes": r["bytes"],
                     "bytes_read": r["bytes_read"]})
                print(f"rep {rep} {key}: steady {steady_seconds(r):.3f}s first {r['seconds']:.3f}s "
                      f"read_ops {r['read_ops']} bytes_read {r['bytes_read']}", flush=True)
    print("\n| mode | contender | steady s (median) | min..max | x whole | read_ops | bytes_read |")
    print("|---|---|---|---|---|---|---|")
    for key, runs in results.items():
        mode = key.split("/")[0]
        whole = statistics.median(x["steady_s"] for x in results[f"{mode}/whole"])
        s = [x["steady_s"] for x in runs]
        med = statistics.median(s)
        print(f"| {mode} | {key.split('/')[1]} | {med:.3f} | {min(s):.3f}..{max(s):.3f} | "
              f"{med / whole:.3f} | {runs[-1]['read_ops']} | {runs[-1]['bytes_read']} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
