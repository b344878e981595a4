"""Cooperative loads from Python (docs/python.md, "Cooperating ranks"): 2 and
4 processes, meeting through a torch.distributed gloo group (group=) or
torchrun's environment (rank="env"; also Checkpoint.load_into), each rank
byte-exact against numpy slices of the full tensors; a rank killed mid-load (paused by the engine's
SHARDLOAD_COOP_TEST_PAUSE hook, then SIGKILLed) fails the others with
peer_failed within 10 s; a rank with another plan fails them all with
peer_mismatch; /dev/shm holds nothing new after any of them. The ranks are
coop_worker.py processes. The group tests skip without torch."""
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import shardload

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "coop_worker.py")


# Whether torch is installed, without importing it into this process (the
# workers import it; other test files block it in sys.modules).
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch missing")


# Open MPI's shared-memory segments (concurrent MPI tests) are not ours.
FOREIGN = ("vader_segment", "sm_segment", "ompi", "psm")


def shm():
    """/dev/shm's entries, but Open MPI's (FOREIGN)."""
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    return {n for n in names if not n.startswith(FOREIGN)}


def kill_when_paused(proc, stderr_path, timeout=60):
    """SIGKILLs PROC once its stderr (a file) says the engine's test hook
    (SHARDLOAD_COOP_TEST_PAUSE) paused it mid-load; returns the time.time()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(stderr_path) as f:
            if "paused before wave" in f.read():
                proc.kill()
                return time.time()
        if proc.poll() is not None:
            pytest.fail(f"the rank to kill exited ({proc.returncode}) before pausing")
        time.sleep(0.02)
    pytest.fail("the rank to kill never paused")


def run_ranks(mode, path, world, tmp_path, env=None, per_rank_env=None, timeout=120,
              kill=None):
    """Runs WORLD coop_worker.py processes; returns their results (dicts;
    None for a rank that wrote none, i.e. died) once all have exited. KILL:
    the rank to SIGKILL once paused (its env must set the pause hook); the
    time it was killed is then returned too."""
    job = uuid.uuid4().hex
    procs, outs = [], []
    for rank in range(world):
        out = str(tmp_path / f"rank{rank}.json")
        child_env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world),
                         COOP_STORE=str(tmp_path / "store"))
        for var in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
            child_env.pop(var, None)
        if mode in ("env", "into", "device"):
            child_env.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                             TORCHELASTIC_RUN_ID=f"pytest-{job}")
        child_env.update(env or {})
        child_env.update((per_rank_env or {}).get(rank, {}))
        with open(f"{out}.stderr", "w") as err:
            procs.append(subprocess.Popen([sys.executable, WORKER, mode, path, out],
                                          env=child_env, stderr=err))
        outs.append(out)
    killed_at = None if kill is None else kill_when_paused(procs[kill], f"{outs[kill]}.stderr")
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{mode}: ranks still running after {timeout} s (a hang)")
    results = []
    for out in outs:
        try:
            with open(out) as f:
                results.append(json.load(f))
        except FileNotFoundError:
            results.append(None)
    return results if kill is None else (results, killed_at)


@pytest.fixture
def shm_unchanged():
    before = shm()
    yield
    new = shm() - before
    if new:
        time.sleep(1)  # another process's file may come and go meanwhile
        new &= shm()
    assert not new, f"left in /dev/shm: {sorted(new)}"


@needs_torch
@pytest.mark.parametrize("world", [2, 4])
def test_node_group_collectives(tmp_path, world):
    results = run_ranks("collectives", "-", world, tmp_path)
    assert results == [{"ok": True}] * world, results


@needs_torch
@pytest.mark.parametrize("world", [2, 4])
def test_group_load_is_byte_exact(llama, tmp_path, world, shm_unchanged):
    directory, _ = llama
    results = run_ranks("group", directory, world, tmp_path)
    for rank, result in enumerate(results):
        assert result and result.get("ok"), (rank, result)
        stats = result["stats"]
        assert (stats["rank"], stats["world"]) == (rank, world)
        assert stats["cooperate"] == "group"
        coop = stats["cooperation"]
        assert (coop["local_rank"], coop["local_size"]) == (rank, world), coop


@pytest.mark.parametrize("world", [2, 4])
def test_torchrun_environment_load_is_byte_exact(llama, tmp_path, world, shm_unchanged):
    directory, _ = llama
    results = run_ranks("env", directory, world, tmp_path)
    for rank, result in enumerate(results):
        assert result and result.get("ok"), (rank, result)
        stats = result["stats"]
        assert stats["cooperate"] == "torchrun" and stats["job"].startswith("pytest-")
        coop = stats["cooperation"]
        assert (coop["local_rank"], coop["local_size"]) == (rank, world), coop


def test_load_into_cooperates_under_torchrun(llama, tmp_path, shm_unchanged):
    directory, _ = llama
    results = run_ranks("into", directory, 2, tmp_path, env={"COOP_STAGING": str(256 << 10)})
    for rank, result in enumerate(results):
        assert result and result.get("ok"), (rank, result)
        stats = result["stats"]
        assert stats["cooperate"] == "torchrun" and stats["cooperation"]["local_rank"] == rank


@pytest.mark.parametrize("mode", ["buffered", "auto"])
def test_device_loads_cooperate_under_torchrun(llama, tmp_path, mode, shm_unchanged):
    """rank="env", device="cuda:0" (the fake CUDA runtime): staged through the
    node's registered staging (buffered) or each rank's own reads (auto, the
    checkpoint cached), each rank's device bytes equal numpy's slices."""
    fake = os.environ.get("FAKE_CUDART", "")
    if not fake or not os.path.exists(fake):
        pytest.skip("FAKE_CUDART (the fake CUDA runtime) not given")
    directory, _ = llama
    results = run_ranks("device", directory, 2, tmp_path, env={"COOP_MODE": mode})
    for r in results:
        assert r and r.get("ok"), r
        assert r["stats"]["device"] == "cuda:0"
        how = r["stats"]["cooperation"]["how"]
        if mode == "buffered":
            assert r["stats"]["transfer"].startswith("cooperative: "), r["stats"]
            assert how.startswith("staged"), how


def test_small_staging_is_byte_exact(llama, tmp_path, shm_unchanged):
    directory, _ = llama  # tensors up to ~1 MB: staging far below the largest
    results = run_ranks("env", directory, 2, tmp_path,
                        env={"COOP_STAGING": "65536", "COOP_MODE": "buffered"})
    assert all(r and r.get("ok") for r in results), results
    assert all(r["stats"]["cooperation"]["waves"] > 1 for r in results), results


@pytest.mark.parametrize("mode", ["env", pytest.param("group", marks=needs_torch)])
def test_killed_rank_fails_the_others_quickly(llama, tmp_path, mode, shm_unchanged):
    directory, _ = llama
    # Rank 1 stops before its third wave (of dozens through 256 KiB of
    # staging) until it is killed: a death mid-load, whatever the timing.
    results, killed_at = run_ranks(
        mode, directory, 4, tmp_path, kill=1,
        env={"COOP_STAGING": str(256 << 10), "COOP_MODE": "buffered",
             "SHARDLOAD_COOP_TEST_PAUSE": "1:2"})
    assert results[1] is None, results[1]
    for rank in (0, 2, 3):
        result = results[rank]
        assert result and result.get("code") == "peer_failed", (rank, result)
        assert result["at"] - killed_at < 10, (rank, result["at"] - killed_at)


def test_rank_with_another_plan_is_refused(llama, tmp_path, shm_unchanged):
    directory, config = llama
    rules = dict(config["base_model_tp_plan"])
    rules.pop(next(k for k in rules if "mlp" in k))  # rank 1 replicates one MLP projection
    other = str(tmp_path / "other-config.json")
    with open(other, "w") as f:
        json.dump(dict(config, base_model_tp_plan=rules), f)
    results = run_ranks("env", directory, 2, tmp_path, per_rank_env={1: {"COOP_PLAN_1": other}})
    for rank, result in enumerate(results):
        assert result and result.get("code") == "peer_mismatch", (rank, result)
        assert "plan" in result["message"], result["message"]


def test_arguments(llama, monkeypatch):
    directory, _ = llama
    for var in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="cooperate=True needs"):
        shardload.load(directory, rank=0, world=2, plan="hf", cooperate=True)
    with pytest.raises(TypeError, match="cooperate"):
        shardload.load(directory, rank=0, world=2, plan="hf", cooperate="yes")
    with pytest.raises(ValueError, match="staging"):
        shardload.load(directory, rank=0, world=2, plan="hf", staging=0)
    with pytest.raises(TypeError, match="group"):
        shardload.load(directory, plan="hf", group=object())
    # Under torchrun, cooperate=False loads alone (no other rank is waiting).
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "pytest-" + uuid.uuid4().hex)
    alone = shardload.load(directory, rank="env", world="env", plan="hf", cooperate=False)
    assert "cooperate" not in alone.stats and "cooperation" not in alone.stats
    assert alone.stats["rank"] == 1
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        shardload.load(directory, rank="env", world="env", plan="hf")
