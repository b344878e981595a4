"""Benchmark of the Python drop-in surface (not a test; CTest never runs it).

    PYTHONPATH=build/python /usr/bin/python3 perf/bench_python.py /work/perf-data/llama8g [--layers 4] [--reps 3]

Each case runs in a subprocess of its own, interleaved with the others, and
reports its wall time and its peak resident memory beyond what it held before
the load (ru_maxrss, from wait4, minus the RSS measured just before):
  load_into       shardload.torch.load_into(state, path): straight into the
                  existing (touched) tensors of LAYERS layers
  load+copy_      shardload.load(framework="torch") of the same tensors, then
                  state[k].copy_(loaded[k]): what load_state_dict-style code does
  get_slice rows  safe_open(...).get_slice(embed)[0:1024]
  get_tensor+idx  safe_open(...).get_tensor(embed)[0:1024]
  ctrl-c          shardload.load(path) interrupted (_thread.interrupt_main) at
                  its first progress report: seconds from the interrupt to
                  KeyboardInterrupt
Prints a table of medians and [min, max]."""
import argparse
import json
import os
import statistics
import subprocess
import sys

CASE = r"""
import json, os, resource, sys, threading, time, _thread
import torch, shardload, shardload.torch as st
path, case, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

ckpt = shardload.open(path)
names = [n for n in ckpt if n.startswith(tuple(f"model.layers.{i}." for i in range(layers)))]
embed = "model.embed_tokens.weight"
out = {}
if case in ("load_into", "load+copy_"):
    state = {n: torch.ones(tuple(ckpt[n].shape), dtype=torch.bfloat16) for n in names}
    out["bytes"] = sum(ckpt[n].nbytes for n in names)
before = rss()
start = time.monotonic()
if case == "load_into":
    st.load_into(state, path, strict=False)
elif case == "load+copy_":
    loaded = shardload.load(path, select=names, framework="torch")
    with torch.no_grad():
        for n in names:
            state[n].copy_(loaded[n])
    del loaded
elif case == "get_slice rows":
    with shardload.safe_open(path, framework="pt") as f:
        x = f.get_slice(embed)[0:1024]
elif case == "get_tensor+idx":
    with shardload.safe_open(path, framework="pt") as f:
        x = f.get_tensor(embed)[0:1024].clone()
elif case == "ctrl-c":
    fired = []
    def progress(done, total):
        if not fired:
            fired.append(time.monotonic())
            _thread.interrupt_main()
    try:
        shardload.load(path, progress=progress)
    except KeyboardInterrupt:
        start = fired[0]
out["seconds"] = time.monotonic() - start
out["before"] = before
print(json.dumps(out))
"""


def run_case(path, case, layers):
    proc = subprocess.Popen([sys.executable, "-c", CASE, path, case, str(layers)],
                            stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed ({proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["extra_mb"] = (usage.ru_maxrss * 1024 - result["before"]) / 1e6
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cases = ["load_into", "load+copy_", "get_slice rows", "get_tensor+idx", "ctrl-c"]
    results = {case: [] for case in cases}
    for _ in range(args.reps):
        for case in cases:
            results[case].append(run_case(args.path, case, args.layers))
    print(f"{'case':16} {'seconds (median [min, max])':32} {'extra peak RSS MB (median [min, max])'}")
    for case, runs in results.items():
        secs = [r["seconds"] for r in runs]
        extra = [r["extra_mb"] for r in runs]
        print(f"{case:16} {statistics.median(secs):7.3f} [{min(secs):.3f}, {max(secs):.3f}]"
              f"{'':12} {statistics.median(extra):8.0f} [{min(extra):.0f}, {max(extra):.0f}]")
    data = results["load_into"][0].get("bytes")
    if data:
        print(f"(load_into / load+copy_: {args.layers} layers, {data / 1e9:.2f} GB of tensors)")


if __name__ == "__main__":
    main()
