#!/usr/bin/python3
"""Independent oracle for `shardload split` and `shardload plan`: numpy slices
every full tensor of a generated Llama-like checkpoint by the torch.chunk rule
(whole heads for attention, kv heads replicated when fewer than ranks, as
docs/tp-plan.md says of a Hugging Face base_model_tp_plan) and compares each
tensor of `split --world W --plan hf` for W in (2, 4, 8): names, local shapes,
bytes, and each rank's __metadata__ (tp_rank, tp_world). `plan --json` must
agree with the split, and give the same answer on a copy of the checkpoint
whose tensor data is zeroed (it reads headers only).

usage: split_oracle.py SHARDLOAD_BINARY WORK_DIR
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


def read_checkpoint(path):
    """{name: numpy array of uint16 (BF16 bits) or uint8}, shard metadata list."""
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    tensors, metas = {}, []
    for name in files:
        with open(os.path.join(path, name), "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        metas.append(header.pop("__metadata__", None))
        data = blob[8 + n:]
        for tname, info in header.items():
            begin, end = info["data_offsets"]
            assert info["dtype"] == "BF16", tname
            arr = np.frombuffer(data[begin:end], dtype="<u2").reshape(info["shape"])
            tensors[tname] = arr
    return tensors, metas


def generated(binary, path):
    """Generates the 12 MB Llama-like test checkpoint (4 MB shards) at PATH
    afresh; returns its config.json and its full tensors (read_checkpoint)."""
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([binary, "generate", path, "--size", "12MB", "--max-shard-size", "4MB"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    return config, read_checkpoint(path)[0]


# Open MPI's shared-memory transport (its ranks', and concurrent MPI tests')
# keeps its own segments under these names; nothing of shardload's may stay.
FOREIGN = ("vader_segment", "sm_segment", "ompi", "psm")


def shm():
    """/dev/shm's entries, but Open MPI's (FOREIGN)."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {n for n in names if not n.startswith(FOREIGN)}


def chunk(units, world, rank):
    """torch.chunk: ceil(units/world) each, the tail short or empty."""
    c = -(-units // world)
    return min(rank * c, units), min((rank + 1) * c, units)


def head_range(heads, world, rank, replicate_when_fewer):
    if heads < world and replicate_when_fewer:
        assert world % heads == 0
        h = rank // (world // heads)
        return h, h + 1
    return chunk(heads, world, rank)


def expected(name, full, config, world, rank):
    d = config["head_dim"]
    if ".self_attn.q_proj." in name:
        a, b = head_range(config["num_attention_heads"], world, rank, False)
        return full[a * d:b * d, :]
    if ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
        a, b = head_range(config["num_key_value_heads"], world, rank, True)
        return full[a * d:b * d, :]
    if ".self_attn.o_proj." in name:
        a, b = head_range(config["num_attention_heads"], world, rank, False)
        return full[:, a * d:b * d]
    if ".mlp.gate_proj." in name or ".mlp.up_proj." in name:
        a, b = chunk(full.shape[0], world, rank)
        return full[a:b, :]
    if ".mlp.down_proj." in name:
        a, b = chunk(full.shape[1], world, rank)
        return full[:, a:b]
    return full  # unmatched: replicated


def check_split(binary, work, src, config, full, world):
    out = os.path.join(work, f"split-{world}")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([binary, "split", src, "--world", str(world), "--plan", "hf", "--out", out,
                    "--max-shard-size", "2MB"], check=True, stdout=subprocess.DEVNULL)
    assert sorted(os.listdir(out)) == sorted(f"rank-{r}" for r in range(world)), os.listdir(out)
    def plan_json(*extra):
        return json.loads(subprocess.run([binary, "plan", src, "--world", str(world), "--plan",
                                          "hf", "--buffered", "--json", *extra], check=True,
                                         capture_output=True, text=True).stdout.splitlines()[-1])
    plan = plan_json()
    exact = plan_json("--max-over-read", "1")
    for r in range(world):
        got, metas = read_checkpoint(os.path.join(out, f"rank-{r}"))
        assert sorted(got) == sorted(full), f"rank {r}: tensor names differ"
        for meta in metas:
            assert meta is not None and meta.get("tp_rank") == str(r), meta
            assert meta.get("tp_world") == str(world), meta
        total = 0
        for name, arr in full.items():
            want = expected(name, arr, config, world, r)
            assert got[name].shape == want.shape, (name, r, got[name].shape, want.shape)
            assert np.array_equal(got[name], want), f"{name}: rank {r} of {world} differs"
            total += want.nbytes
        rp = plan["ranks"][r]
        assert rp["rank"] == r and rp["bytes"] == total, rp
        assert total <= rp["bytes_read"] <= 8 * total, rp  # the default --max-over-read
        assert exact["ranks"][r]["bytes_read"] == total, exact["ranks"][r]
        shapes = {t["name"]: tuple(t["shape"]) for t in rp["tensors"]}
        assert shapes == {n: got[n].shape for n in got}, f"plan shapes differ, rank {r}"
    return plan


def zeroed_copy(src, dst):
    """A copy of SRC whose tensor data bytes are all zero (headers kept)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for name in os.listdir(dst):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(dst, name)
        with open(path, "r+b") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            size = os.path.getsize(path)
            f.seek(8 + n)
            f.write(b"\0" * (size - 8 - n))


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "ckpt")
    config, full = generated(binary, src)
    zeroed = os.path.join(work, "zeroed")
    zeroed_copy(src, zeroed)
    for world in (2, 4, 8):
        plan = check_split(binary, work, src, config, full, world)
        again = subprocess.run([binary, "plan", zeroed, "--world", str(world), "--plan", "hf",
                                "--buffered", "--json"], check=True, capture_output=True,
                               text=True)
        assert json.loads(again.stdout.splitlines()[-1]) == plan, "plan depends on tensor data"
        print(f"world {world}: {len(full)} tensors x {world} ranks match")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError) as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
