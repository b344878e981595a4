#!/usr/bin/env python3
"""The GPU checks of issue 14, run by perf/gpu_check.sh on a machine with a
CUDA device, torch and safetensors (not a test: CTest never runs it).

  1. the real runtime's refusals: cuda:<count> is "unsupported";
  2. byte-exact: shardload.load(device="cuda:0") against
     safetensors.torch.load_file(shard, device="cuda:0"), whole and for rank
     R of W (hf plan; each local tensor against torch.chunk of the full one
     along the split dimension, and against shardload's own CPU rank load);
  3. speed, warm page cache, interleaved: the pinned host-to-device copy
     limit (torch copy_ from pinned memory), shardload to cuda:0, and
     safetensors.torch.load_file to cuda:0; medians and ranges;
  4. (--gds also|only) GPUDirect Storage: a direct=True, gds=True load
     byte-exact against safetensors, then direct=True loads with and without
     gds, interleaved, the checkpoint's page cache dropped before each
     (posix_fadvise DONTNEED), medians and ranges, each run's `transfer`
     kept (a fallback to staging shows there, with its reason).
Prints one JSON object on the last line (also written to --out)."""
import argparse
import glob
import json
import os
import statistics
import sys
import time

import shardload
import torch
from safetensors.torch import load_file


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def as_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def shards(path):
    return sorted(glob.glob(os.path.join(path, "*.safetensors")))


def warm(path):
    for f in shards(path):
        with open(f, "rb") as fh:
            while fh.read(64 << 20):
                pass


def reference(path):
    out = {}
    for f in shards(path):
        out.update(load_file(f, device="cuda:0"))
    return out


def check_whole(path, ref):
    got = shardload.load(path, device="cuda:0", framework="torch")
    assert sorted(got) == sorted(ref), "tensor names differ"
    bad = [n for n, t in got.items()
           if t.device.type != "cuda" or not torch.equal(as_bytes(t), as_bytes(ref[n]))]
    log(f"whole load: {len(got)} tensors, {len(bad)} differ; {got.stats['transfer']}")
    return {"tensors": len(got), "mismatches": bad[:10], "stats": got.stats}


def check_rank(path, ref, rank, world):
    got = shardload.load(path, device="cuda:0", framework="torch", rank=rank, world=world,
                         plan="hf")
    host = shardload.load(path, framework="torch", rank=rank, world=world, plan="hf")
    bad, chunked = [], 0
    for name, t in got.items():
        full = ref[name]
        if not torch.equal(as_bytes(t).cpu(), as_bytes(host[name])):
            bad.append(name + " (vs CPU rank load)")
        dims = [d for d in range(full.dim()) if full.shape[d] != t.shape[d]]
        want = full if not dims else torch.chunk(full, world, dims[0])[rank]
        if tuple(want.shape) == tuple(t.shape):
            chunked += 1
            if not torch.equal(as_bytes(t), as_bytes(want)):
                bad.append(name + " (vs torch.chunk of safetensors)")
    log(f"rank {rank} of {world}: {len(got)} tensors, {chunked} checked against torch.chunk, "
        f"{len(bad)} differ")
    return {"tensors": len(got), "chunk_checked": chunked, "mismatches": bad[:10]}


def copy_limit_gbps(nbytes):
    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda:0")
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    return nbytes / (time.perf_counter() - start) / 1e9


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def drop_cache(path):
    for f in shards(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def check_gds(path, ref):
    got = shardload.load(path, device="cuda:0", framework="torch", direct=True, gds=True)
    bad = [n for n, t in got.items()
           if t.device.type != "cuda" or not torch.equal(as_bytes(t), as_bytes(ref[n]))]
    transfer = got.stats["transfer"]
    log(f"gds load: {len(got)} tensors, {len(bad)} differ; {transfer}")
    return {"tensors": len(got), "mismatches": bad[:10], "transfer": transfer,
            "used": transfer.startswith("GDS: ") and "cuFileRead" in transfer}


def bench_gds(path, total, reps):
    runs = {"staged_direct": [], "gds_direct": []}
    transfers = {"staged_direct": [], "gds_direct": []}
    for rep in range(reps):
        order = [False, True] if rep % 2 == 0 else [True, False]
        for gds in order:
            key = "gds_direct" if gds else "staged_direct"
            drop_cache(path)
            torch.cuda.empty_cache()
            s, loaded = timed(lambda: shardload.load(path, device="cuda:0", framework="torch",
                                                     direct=True, gds=gds))
            runs[key].append(total / s / 1e9)
            transfers[key].append(loaded.stats["transfer"])
            del loaded
        log(f"gds rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} GB/s" for k, v in runs.items()))
    out = {"gb_per_s": {k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                            "runs": v} for k, v in runs.items()},
           "transfer": {k: v[0] for k, v in transfers.items()}}
    out["gds/staged"] = (out["gb_per_s"]["gds_direct"]["median"] /
                         out["gb_per_s"]["staged_direct"]["median"])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--world", type=int, default=8)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--out", default="gpu-check.json")
    p.add_argument("--gds", choices=["off", "also", "only"], default="also",
                   help="GPUDirect Storage checks: skip, add, or run only them")
    a = p.parse_args()
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}

    count = torch.cuda.device_count()
    try:
        shardload.load(a.path, device=f"cuda:{count}", framework="torch", select="**.norm.weight")
        result["missing_device"] = "NOT refused"
    except shardload.Error as e:
        result["missing_device"] = f"{e.code}: {e.detail}"
    log("cuda:count ->", result["missing_device"])

    warm(a.path)
    ref = reference(a.path)
    total = sum(t.numel() * t.element_size() for t in ref.values())
    result["bytes"] = total
    if a.gds != "off":
        result["gds"] = check_gds(a.path, ref)
    if a.gds == "only":
        del ref
        torch.cuda.empty_cache()
        result["gds"].update(bench_gds(a.path, total, a.reps))
        return finish(result, not result["gds"]["mismatches"], a.out)
    result["whole"] = check_whole(a.path, ref)
    result["rank"] = check_rank(a.path, ref, a.rank, a.world)
    del ref
    torch.cuda.empty_cache()

    runs = {"copy_limit": [], "shardload": [], "safetensors": []}
    for rep in range(a.reps):
        warm(a.path)
        runs["copy_limit"].append(copy_limit_gbps(min(total, 4 << 30)))
        torch.cuda.empty_cache()
        s, loaded = timed(lambda: shardload.load(a.path, device="cuda:0", framework="torch"))
        runs["shardload"].append(total / s / 1e9)
        del loaded
        torch.cuda.empty_cache()
        s, loaded = timed(lambda: reference(a.path))
        runs["safetensors"].append(total / s / 1e9)
        del loaded
        torch.cuda.empty_cache()
        log(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.2f} GB/s" for k, v in runs.items()))
    result["gb_per_s"] = {k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                              "runs": v} for k, v in runs.items()}
    med = {k: v["median"] for k, v in result["gb_per_s"].items()}
    result["ratios"] = {"shardload/copy_limit": med["shardload"] / med["copy_limit"],
                        "shardload/safetensors": med["shardload"] / med["safetensors"]}
    if a.gds == "also":
        result["gds"].update(bench_gds(a.path, total, a.reps))
    ok = (not result["whole"]["mismatches"] and not result["rank"]["mismatches"]
          and result["missing_device"].startswith("unsupported")
          and not result.get("gds", {}).get("mismatches"))
    return finish(result, ok, a.out)


def finish(result, ok, out):
    result["ok"] = ok
    text = json.dumps(result, default=str)
    with open(out, "w") as fh:
        fh.write(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
