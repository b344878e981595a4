#!/usr/bin/python3
"""Planning and loading at DeepSeek-V3's tensor count (bounded size): writes
perf/gen_deepseek.py's checkpoint with every dimension divided by 64 (90,427
tensors, 163 sparse shards, layer 3 in real random bytes), then checks:

  * `plan --world 8 --plan hf --json` (every rank, from one resolution of
    the plan) equals `plan --rank r` for two ranks, tensor by tensor;
  * each rank's tensors, local shapes and bytes equal what numpy-free index
    arithmetic says (MLP gate/up split by rows, down by columns, the rest
    whole), and per rank `bytes`, `read_ops` and `bytes_read` are the sums of
    the per-tensor figures, with a strategy for every tensor;
  * `load --select 'model.layers.3.**' --rank r --save` gives, for every
    rank, exactly numpy's slice of each full tensor read from the shards, and
    its `load --json` totals equal the plan's for that selection.
Planning time and memory are not asserted (perf/ measures them).

usage: deepseek_oracle.py SHARDLOAD_BINARY WORK_DIR
Exit 0 when everything matches, 1 on a mismatch, 77 when numpy is missing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("numpy not available: skipping")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = os.path.join(HERE, "..", "..", "perf", "gen_deepseek.py")
WORLD = 8
LAYER = 3
NP_DTYPE = {"F8_E4M3": "u1", "BF16": "<u2", "F32": "<f4"}


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def headers(path):
    """{name: (shard path, absolute offset, dtype, shape)} from the shards."""
    out = {}
    for f in sorted(os.listdir(path)):
        if not f.endswith(".safetensors"):
            continue
        full = os.path.join(path, f)
        with open(full, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        for name, info in header.items():
            out[name] = (full, 8 + n + info["data_offsets"][0], info["dtype"], info["shape"])
    return out


def read_tensor(entry):
    path, offset, dtype, shape = entry
    count = int(np.prod(shape)) if shape else 1
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(count * np.dtype(NP_DTYPE[dtype]).itemsize)
    return np.frombuffer(raw, dtype=NP_DTYPE[dtype]).reshape(shape)


def split_axis(name):
    """The axis the config's plan splits (None: whole), by module name."""
    parent = name.rsplit(".", 1)[0]
    if ".mlp." not in name:
        return None
    if parent.endswith((".gate_proj", ".up_proj")):
        return 0  # colwise: rows of [out, in]
    if parent.endswith(".down_proj"):
        return 1  # rowwise: columns
    return None


def expected_slice(full, axis, rank):
    if axis is None:
        return full
    n = full.shape[axis]
    assert n % WORLD == 0, (n, full.shape)
    c = n // WORLD
    return np.take(full, range(rank * c, (rank + 1) * c), axis=axis)


def local_shape(shape, axis):
    if axis is None:
        return list(shape)
    out = list(shape)
    out[axis] //= WORLD
    return out


def check_plan(ranks, infos, problems):
    for rp in ranks:
        r = rp["rank"]
        tensors = rp["tensors"]
        if len(tensors) != len(infos):
            problems.append(f"rank {r}: {len(tensors)} tensors, want {len(infos)}")
        size = 0
        for t in tensors:
            _, _, dtype, shape = infos[t["name"]]
            want = local_shape(shape, split_axis(t["name"]))
            nbytes = int(np.prod(want)) * np.dtype(NP_DTYPE[dtype]).itemsize
            if t["shape"] != want or t["bytes"] != nbytes:
                problems.append(f"rank {r} {t['name']}: {t['shape']} {t['bytes']}, want {want}")
            if t["strategy"] not in ("exact", "staged", "mixed", "mapped"):
                problems.append(f"rank {r} {t['name']}: strategy {t['strategy']!r}")
            size += nbytes
        for field, total in (("bytes", size),
                             ("read_ops", sum(t["read_ops"] for t in tensors)),
                             ("bytes_read", sum(t["bytes_read"] for t in tensors))):
            if rp[field] != total:
                problems.append(f"rank {r}: {field} {rp[field]}, per-tensor sum {total}")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    cli, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    ckpt = os.path.join(work, "ckpt")
    subprocess.run([sys.executable, GENERATOR, ckpt, "--divide", "64", "--real-layer",
                    str(LAYER)], check=True)
    infos = headers(ckpt)
    assert len(infos) == 90427, len(infos)
    problems = []

    # Every command forces buffered reads: the default (auto) mode plans from
    # the page cache of the moment, which other processes change between runs.
    every = run_json([cli, "plan", ckpt, "--world", str(WORLD), "--plan", "hf", "--buffered",
                      "--json"])
    if [r["rank"] for r in every["ranks"]] != list(range(WORLD)):
        problems.append("plan without --rank must report every rank in order")
    check_plan(every["ranks"], infos, problems)
    for r in (0, WORLD - 3):  # two ranks: each plan of every tensor takes seconds
        one = run_json([cli, "plan", ckpt, "--world", str(WORLD), "--plan", "hf", "--rank",
                        str(r), "--buffered", "--json"])
        if one["ranks"] != [every["ranks"][r]]:
            problems.append(f"rank {r}: plan --rank differs from the every-rank plan")

    layer = f"model.layers.{LAYER}.**"
    names = sorted(n for n in infos if n.startswith(f"model.layers.{LAYER}."))
    for r in range(WORLD):
        out = os.path.join(work, f"rank-{r}")
        common = [ckpt, "--world", str(WORLD), "--plan", "hf", "--rank", str(r),
                  "--select", layer, "--buffered", "--json"]
        planned = run_json([cli, "plan"] + common)["ranks"][0]
        loaded = run_json([cli, "load"] + common + ["--save", out, "--threads", "2"])
        for field in ("bytes", "bytes_read", "read_ops"):
            if loaded[field] != planned[field]:
                problems.append(f"rank {r}: load {field} {loaded[field]}, plan {planned[field]}")
        got = headers(out)
        if sorted(got) != names:
            problems.append(f"rank {r}: saved {len(got)} tensors, want {len(names)}")
            continue
        for name in names:
            want = expected_slice(read_tensor(infos[name]), split_axis(name), r)
            have = read_tensor(got[name])
            if have.shape != want.shape or not np.array_equal(have.view("u1"), want.view("u1")):
                problems.append(f"rank {r} {name}: bytes differ from numpy's slice")
        shutil.rmtree(out)

    for p in problems[:20]:
        print("MISMATCH", p)
    if problems:
        print(f"{len(problems)} mismatches")
        return 1
    print(f"deepseek oracle: {len(infos)} tensors, {WORLD} ranks planned, layer {LAYER} "
          f"({len(names)} tensors) loaded byte-exact on every rank")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
