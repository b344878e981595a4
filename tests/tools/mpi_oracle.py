#!/usr/bin/python3
"""`shardload load --mpi` under `mpirun --oversubscribe`, against the
independent numpy slicer of split_oracle.py: with 2, 4 and 8 ranks, each
rank's loaded tensors (written with --save) equal numpy's slices of the full
tensors for its rank, its --json report says rank, world, the MPI library
and its node rank, and the node's ranks read the checkpoint's bytes once
between them (buffered); without --plan, 3 ranks each hold every tensor
whole. A rank with a different plan makes the job fail with peer_mismatch;
a rank whose checkpoint is missing ends the job (the others were waiting for
it at the rendezvous) within 10 s, its error naming the file; a rank killed
mid-load (paused by the engine's SHARDLOAD_COOP_TEST_PAUSE hook, then
SIGKILLed) ends the job within 10 s. /dev/shm holds
nothing new afterwards.

usage: mpi_oracle.py SHARDLOAD_BINARY WORK_DIR
Exit 0 when everything matches, 1 on a mismatch, 77 when numpy, mpirun or
this build's MPI support is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import split_oracle as oracle
except ImportError:
    print("numpy not available: skipping")
    sys.exit(77)

# CI runs as root; mpirun refuses root without these. In an ASan build, leak
# detection is off for the MPI ranks only: Open MPI keeps MPI_Init's
# allocations until exit, in components it has dlclose'd by then (their
# frames unnamed, so no suppression can single them out); every other
# ASan/UBSan check stays on, and the same load paths are leak-checked
# without MPI by the other tests. In a TSan build, reports with a frame in
# Open MPI's uninstrumented libraries are suppressed (mpi_tsan.supp).
TSAN_SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_tsan.supp")
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1",
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0",
               TSAN_OPTIONS=os.environ.get("TSAN_OPTIONS", "")
               + f":suppressions={TSAN_SUPPRESSIONS}")
# Each rank: sh -c SCRIPT BINARY CKPT OUT; $R is its MPI_COMM_WORLD rank.
RANK_SCRIPT = 'R=$OMPI_COMM_WORLD_RANK; exec "$0" load "$1" --plan "${PLAN:-hf}" --mpi ' \
              '--buffered --save "$2/rank-$R" --json >"$2/rank-$R.json"'



def mpirun(world, script, *args, timeout=120):
    start = time.monotonic()
    run = subprocess.run(["mpirun", "--oversubscribe", "-np", str(world), "sh", "-c", script,
                          *args], env=MPI_ENV, capture_output=True, text=True, timeout=timeout)
    return run, time.monotonic() - start


def check_world(binary, work, src, config, full, world):
    out = os.path.join(work, f"mpi-{world}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    run, _ = mpirun(world, RANK_SCRIPT, binary, src, out)
    assert run.returncode == 0, f"mpirun -np {world}: {run.returncode}\n{run.stdout}{run.stderr}"
    read_for_node = 0
    for r in range(world):
        with open(os.path.join(out, f"rank-{r}.json")) as f:
            report = json.loads(f.read().splitlines()[-1])
        assert (report["rank"], report["world"]) == (r, world), report
        assert report["mpi"] and report["mpi"].startswith("Open MPI"), report["mpi"]
        coop = report["cooperation"]  # one node: every rank cooperates, in world order
        assert (coop["local_rank"], coop["local_size"]) == (r, world), coop
        data = sum(a.nbytes for a in full.values())  # every tensor is needed by some rank
        assert data <= coop["node_bytes"] <= checkpoint_bytes(src), (coop, data)
        node_bytes = coop["node_bytes"]
        read_for_node += coop["read_for_node"]
        got, _ = oracle.read_checkpoint(os.path.join(out, f"rank-{r}"))
        assert sorted(got) == sorted(full), f"rank {r}: tensor names differ"
        for name, arr in full.items():
            want = oracle.expected(name, arr, config, world, r)
            assert got[name].shape == want.shape, (name, r, got[name].shape, want.shape)
            assert np.array_equal(got[name], want), f"{name}: rank {r} of {world} differs"
    assert read_for_node == node_bytes, f"the ranks read {read_for_node} of {node_bytes} bytes"


def checkpoint_bytes(src):
    """Bytes of the shards' files (headers included)."""
    return sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src)
               if n.endswith(".safetensors"))


def check_whole(binary, work, src, full):
    """--mpi without --plan: 3 ranks each load every tensor whole, the node
    reading the checkpoint once between them."""
    out = os.path.join(work, "mpi-whole")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    script = RANK_SCRIPT.replace(' --plan "${PLAN:-hf}"', "")
    run, _ = mpirun(3, script, binary, src, out)
    assert run.returncode == 0, f"mpirun -np 3 without --plan: {run.returncode}\n{run.stderr}"
    read_for_node = 0
    for r in range(3):
        got, _ = oracle.read_checkpoint(os.path.join(out, f"rank-{r}"))
        assert sorted(got) == sorted(full) and all(
            np.array_equal(got[n], full[n]) for n in full), f"rank {r}: whole tensors differ"
        with open(os.path.join(out, f"rank-{r}.json")) as f:
            coop = json.loads(f.read().splitlines()[-1])["cooperation"]
        read_for_node += coop["read_for_node"]
    assert read_for_node == coop["node_bytes"], (read_for_node, coop)


def check_mismatch(binary, work, src, config):
    out = os.path.join(work, "mpi-mismatch")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    rules = dict(config["base_model_tp_plan"])
    rules.pop(next(k for k in rules if "mlp" in k))
    other = os.path.join(out, "other-config.json")
    with open(other, "w") as f:
        json.dump(dict(config, base_model_tp_plan=rules), f)
    script = f'[ "$OMPI_COMM_WORLD_RANK" = 1 ] && export PLAN="{other}"; ' + RANK_SCRIPT
    run, _ = mpirun(2, script, binary, src, out)
    assert run.returncode != 0, "a rank with another plan was not refused"
    assert "peer_mismatch" in run.stderr and "plan" in run.stderr, run.stderr


def check_missing_checkpoint(binary, work, src):
    out = os.path.join(work, "mpi-missing")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    missing = os.path.join(out, "no-such-checkpoint")
    script = f'[ "$OMPI_COMM_WORLD_RANK" = 2 ] && set -- "$0" "{missing}" "$2"; ' + RANK_SCRIPT
    run, seconds = mpirun(4, script, binary, src, out)
    assert run.returncode != 0, "a rank without its checkpoint did not fail the job"
    assert missing in run.stderr, run.stderr
    assert seconds < 10, f"the job took {seconds:.1f} s to end"


def check_killed_rank(binary, work, src):
    """Rank 1 stops mid-load (the engine's SHARDLOAD_COOP_TEST_PAUSE hook)
    and is SIGKILLed: mpirun ends the job within 10 s and says so."""
    out = os.path.join(work, "mpi-killed")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    script = 'echo $$ >"$2/pid-$OMPI_COMM_WORLD_RANK"; ' + RANK_SCRIPT.replace(
        "--buffered", "--buffered --staging 256KiB")
    err_path = os.path.join(out, "stderr")
    with open(err_path, "w") as err:
        job = subprocess.Popen(["mpirun", "--oversubscribe", "-np", "4", "sh", "-c", script,
                                binary, src, out], stdout=subprocess.DEVNULL, stderr=err,
                               env=dict(MPI_ENV, SHARDLOAD_COOP_TEST_PAUSE="1:2"))
    try:
        deadline = time.monotonic() + 60
        while "paused before wave" not in open(err_path).read():
            assert job.poll() is None, f"the job ended before rank 1 paused: {job.returncode}"
            assert time.monotonic() < deadline, "rank 1 never paused"
            time.sleep(0.02)
        with open(os.path.join(out, "pid-1")) as f:
            os.kill(int(f.read()), 9)
        killed = time.monotonic()
        rc = job.wait(timeout=30)
        seconds = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
    stderr = open(err_path).read()
    assert rc != 0, "the job succeeded without rank 1"
    assert seconds < 10, f"the job took {seconds:.1f} s to end after the kill"
    assert "signal 9" in stderr or "peer_failed" in stderr, stderr


def main():
    binary, work = sys.argv[1], sys.argv[2]
    if shutil.which("mpirun") is None:
        print("mpirun not found: skipping")
        return 77
    version = subprocess.run([binary, "--version"], check=True, capture_output=True,
                             text=True).stdout
    if "mpi: none" in version:
        print("this shardload has no MPI support: skipping")
        return 77
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "ckpt")
    config, full = oracle.generated(binary, src)
    shm_before = oracle.shm()
    for world in (2, 4, 8):
        check_world(binary, work, src, config, full, world)
        print(f"mpirun -np {world}: {len(full)} tensors x {world} ranks match")
    check_whole(binary, work, src, full)
    print("mpirun -np 3 without --plan: every rank whole, the node reading once")
    check_mismatch(binary, work, src, config)
    print("a rank with another plan: peer_mismatch")
    check_missing_checkpoint(binary, work, src)
    print("a rank without its checkpoint: the job ends, naming the file")
    check_killed_rank(binary, work, src)
    print("a rank killed mid-load: the job ends")
    left = oracle.shm() - shm_before
    if left:
        time.sleep(1)  # another process's file may come and go meanwhile
        left &= oracle.shm()
    assert not left, f"left in /dev/shm: {sorted(left)}"
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
