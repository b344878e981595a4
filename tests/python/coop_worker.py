"""One rank of a cooperative load, run by test_cooperate.py as its own
process: loads the checkpoint as MODE says and writes what happened as JSON
to OUT ({"ok": true, "stats": ...} after checking every tensor against numpy
slices of the full tensors, or {"code", "message", "at"} for a
shardload.Error, "at" the time.time() it was raised).

usage: coop_worker.py MODE CHECKPOINT OUT
  MODE group:       torch.distributed gloo group (FileStore $COOP_STORE), group=WORLD
       collectives: only the node group of WORLD: broadcast from every root, barrier
       env:          rank="env" under a torchrun-like environment (the test sets it)
       into:         Checkpoint.load_into into numpy buffers, as env
       device:       as env, onto "cuda:0" of the fake CUDA runtime ($FAKE_CUDART),
                     each tensor's device bytes copied back and compared
$COOP_PLAN_R=P: rank R uses plan P (a config path) instead of "hf".
$COOP_STAGING: staging= bytes. $COOP_MODE: mode= ("buffered": staged
even when the page cache holds the checkpoint).
"""
import json
import os
import sys
import time

import numpy as np

import safetensors_oracle as oracle
import shardload
from shardload import _cooperate, _shardload


def init_gloo(rank, world):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method="file://" + os.environ["COOP_STORE"],
                            rank=rank, world_size=world)
    return dist


def check_collectives(dist, rank, world):
    comm = _cooperate._node_group(dist.group.WORLD, None)
    assert _cooperate._node_group(dist.group.WORLD, None) is comm, "not cached"
    assert (comm.rank, comm.size) == (rank, world), (comm.rank, comm.size)
    for root in range(world):
        mine = bytes((rank * 31 + i) % 256 for i in range(1000))
        want = bytes((root * 31 + i) % 256 for i in range(1000))
        assert comm.broadcast(root, mine) == want, f"broadcast from {root}"
        comm.barrier()
    assert comm.broadcast(0, b"") == b""
    return {"ok": True}


def check_load(path, me, **kwargs):
    """Loads as rank ME (load() gets its rank from KWARGS) and checks it."""
    plan = os.environ.get(f"COOP_PLAN_{me}", "hf")
    staging = os.environ.get("COOP_STAGING")
    loaded = shardload.load(path, plan=plan, staging=int(staging) if staging else None,
                            mode=os.environ.get("COOP_MODE"), **kwargs)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    full = {n: oracle.view(e) for n, e in oracle.read_dir(path).items()}
    assert sorted(loaded) == sorted(full)
    rank, world = loaded.stats["rank"], loaded.stats["world"]
    for name, array in loaded.items():
        want = oracle.hf_slice(name, full[name], config, world, rank)
        assert array.shape == want.shape and np.array_equal(array, want), (name, rank)
    return {"ok": True, "stats": loaded.stats}


def check_load_into(path, me):
    """Checkpoint.load_into under the torchrun environment: each tensor's
    local bytes into a numpy buffer of its own, checked against numpy."""
    checkpoint = shardload.open(path)
    plan = checkpoint.plan(rank="env", world="env", plan="hf")
    buffers = {n: np.zeros(t.nbytes, dtype=np.uint8) for n, t in plan.tensors.items()}
    stats = checkpoint.load_into(buffers, rank="env", world="env", plan="hf",
                                 staging=int(os.environ.get("COOP_STAGING", 0)) or None)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    full = {n: oracle.view(e) for n, e in oracle.read_dir(path).items()}
    for name, buf in buffers.items():
        want = oracle.hf_slice(name, full[name], config, plan.world, plan.rank)
        assert buf.tobytes() == np.ascontiguousarray(want).tobytes(), (name, me)
    return {"ok": True, "stats": stats}


def check_device(path, me):
    """rank="env" onto cuda:0 of the fake runtime, through the engine's
    binding (torch here has no CUDA to import the capsules)."""
    import ctypes
    from test_device import dl_tensor
    fake = ctypes.CDLL(os.environ["FAKE_CUDART"])
    fake.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    os.environ["SHARDLOAD_CUDART"] = os.environ["FAKE_CUDART"]
    _, _, coop = _cooperate.checked(group=None, rank="env", world="env", cooperate=None,
                                    staging=None, peer_timeout=None)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    memory = _shardload.load(shardload.open(path)._handle, globs=[], threads=1,
                             mode=os.environ.get("COOP_MODE", "auto"), rank=rank, world=world,
                             progress=None, plan_kind="hf", plan_path="", plan_text="",
                             device="cuda:0", **coop.connected().kwargs())
    stats = memory.stats()
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    full = {n: oracle.view(e) for n, e in oracle.read_dir(path).items()}
    for name in memory.dtypes():
        want = np.ascontiguousarray(oracle.hf_slice(name, full[name], config, world, rank))
        capsule = memory.dlpack(name)
        t = dl_tensor(capsule)
        buf = ctypes.create_string_buffer(max(want.nbytes, 1))
        if want.nbytes:
            assert fake.cudaMemcpy(buf, t.data, want.nbytes, 2) == 0, name
        assert buf.raw[:want.nbytes] == want.tobytes(), (name, me)
    return {"ok": True, "stats": stats}


def main():
    mode, path = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    try:
        if mode == "collectives":
            result = check_collectives(init_gloo(rank, world), rank, world)
        elif mode == "group":
            dist = init_gloo(rank, world)
            result = check_load(path, rank, group=dist.group.WORLD)
        elif mode == "into":
            result = check_load_into(path, rank)
        elif mode == "device":
            result = check_device(path, rank)
        else:
            result = check_load(path, rank, rank="env", world="env")
    except shardload.Error as e:
        result = {"code": e.code, "message": str(e), "at": time.time()}
    with open(OUT, "w") as f:
        json.dump(result, f)


OUT = sys.argv[3]
if __name__ == "__main__":
    main()
