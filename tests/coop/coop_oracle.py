#!/usr/bin/python3
"""Cooperative loads launched by environment, as torchrun launches ranks:
N processes of `shardload load CKPT --plan hf` with RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE and TORCHELASTIC_RUN_ID set, on a small
generated Llama-like checkpoint with a staging far smaller than its largest
tensor (many waves). Each rank's --save output is compared with numpy's
slices of the full tensors (the independent slicer of split_oracle.py), and
/dev/shm must hold nothing new afterwards.

usage: coop_oracle.py SHARDLOAD_BINARY WORK_DIR CASE
CASE: exact-W-MODE (W ranks, MODE buffered|direct|auto), kill, kill-leader, mismatch,
truncate. Exit 0 on success, 1 on a mismatch, 77 when numpy is missing.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
try:
    import numpy as np  # noqa: F401  (split_oracle needs it)
    from split_oracle import expected, generated, read_checkpoint, shm
except ImportError:
    print("numpy not available: skipping")
    sys.exit(77)

STAGING = 256 << 10  # far below the largest tensor: many waves



def launch(binary, ckpt, world, job, work, extra=(), per_rank=None, env_extra=None):
    """Starts WORLD ranks; returns [(Popen, out_dir)]."""
    procs = []
    for r in range(world):
        out = os.path.join(work, f"out-{r}")
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                   LOCAL_WORLD_SIZE=str(world), TORCHELASTIC_RUN_ID=job)
        env.update(env_extra or {})
        args = [binary, "load", ckpt, "--plan", "hf", "--staging", str(STAGING), "--json",
                "--threads", "1", "--peer-timeout", "30", "--save", out, *extra]
        if per_rank:
            args = per_rank(r, args)
        log = open(os.path.join(work, f"rank-{r}.log"), "w+")
        procs.append((subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT), out,
                      log))
    _STARTED[id(procs)] = time.monotonic()
    return procs


def finish(procs, timeout=60):
    """[(returncode, log text, json or None, seconds until exit)] once all exited."""
    start = _STARTED.get(id(procs), time.monotonic())
    results = []
    for p, _, log in procs:
        left = max(0.1, timeout - (time.monotonic() - start))
        try:
            p.wait(left)
        except subprocess.TimeoutExpired:
            for q, _, _ in procs:
                q.kill()
            raise AssertionError("a rank hung")
        log.seek(0)
        text = log.read()
        last = [l for l in text.splitlines() if l.startswith("{")]
        results.append((p.returncode, text, json.loads(last[-1]) if last else None,
                        time.monotonic() - start))
    return results


def check_exact(binary, work, ckpt, config, full, world, mode):
    before = shm()
    extra = {"buffered": ["--buffered"], "direct": ["--direct"], "auto": []}[mode]
    if mode == "auto":  # cold: staged through the page cache or O_DIRECT
        evict(ckpt)
    procs = launch(binary, ckpt, world, f"coop-oracle-{os.getpid()}-{world}-{mode}", work, extra)
    results = finish(procs)
    node = None
    read_for_node = 0
    for r, (rc, text, report, _) in enumerate(results):
        assert rc == 0, f"rank {r} failed: {text}"
        coop = report["cooperation"]
        assert coop["local_rank"] == r and coop["local_size"] == world, coop
        if mode != "auto":
            assert coop["how"].startswith("staged"), coop
            assert coop["waves"] > 4, coop
        assert node is None or coop["node_bytes"] == node, coop
        node = coop["node_bytes"]
        read_for_node += coop["read_for_node"]
        got, _ = read_checkpoint(procs[r][1])
        assert sorted(got) == sorted(full), f"rank {r}: tensor names differ"
        for name, arr in full.items():
            want = expected(name, arr, config, world, r)
            assert got[name].shape == want.shape, (name, r, got[name].shape, want.shape)
            assert np.array_equal(got[name], want), f"{name}: rank {r} of {world} differs"
    if results[0][2]["cooperation"]["how"].startswith("staged"):
        # Each byte of the node's union read once, by one rank.
        assert read_for_node == node, (read_for_node, node)
        size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt)
                   if f.endswith(".safetensors"))
        assert node <= size + 4096 * 8, (node, size)
    assert shm() == before, f"/dev/shm changed: {shm() ^ before}"
    print(f"{world} ranks, {mode}: every rank byte-exact; node read {node} bytes once")


def evict(ckpt):
    for f in os.listdir(ckpt):
        fd = os.open(os.path.join(ckpt, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def wait_for(path, text, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path) as f:
            if text in f.read():
                return
        time.sleep(0.02)
    raise AssertionError(f"{path} never said {text!r}")


def check_kill(binary, work, ckpt, victim):
    """VICTIM (2, or 0: the leader, whose process holds the hub) is killed."""
    before = shm()
    procs = launch(binary, ckpt, 4, f"coop-kill-{os.getpid()}", work, ["--buffered"],
                   env_extra={"SHARDLOAD_COOP_TEST_PAUSE": f"{victim}:3"})
    wait_for(os.path.join(work, f"rank-{victim}.log"), "paused before wave 3")
    killed = time.monotonic()
    procs[victim][0].send_signal(signal.SIGKILL)
    results = finish(procs)
    elapsed = max(t for _, _, _, t in results) - (killed - start_of(procs))
    assert results[victim][0] == -signal.SIGKILL, results[victim]
    named = "rank 2 (local rank 2" if victim == 2 else "rank 0 (local rank 0, pid"
    for r in range(4):
        if r == victim:
            continue
        rc, text, report, _ = results[r]
        assert rc != 0 and report and report["error"]["code_name"] == "peer_failed", text
        assert named in text and "left the load" in text, text
    assert elapsed < 10, f"the others took {elapsed:.1f} s to fail"
    assert shm() == before, f"/dev/shm changed: {shm() ^ before}"
    print(f"rank {victim} killed at wave 3: the others failed naming it within {elapsed:.2f} s")


_STARTED = {}


def start_of(procs):
    return _STARTED[id(procs)]


def check_mismatch(binary, work, ckpt):
    before = shm()
    other = os.path.join(work, "other-config.json")
    shutil.copy(os.path.join(ckpt, "config.json"), other)
    def per_rank(r, args):
        if r == 2:
            i = args.index("hf")
            args = args[:i] + [other] + args[i + 1:]
        return args
    results = finish(launch(binary, ckpt, 3, f"coop-mismatch-{os.getpid()}", work, ["--buffered"],
                            per_rank=per_rank))
    for r, (rc, text, report, _) in enumerate(results):
        assert rc != 0 and report and report["error"]["code_name"] == "peer_mismatch", text
        assert f"has plan '{other}'" in text and "has 'hf'" in text, text
    assert shm() == before
    print("a rank with another plan: everyone refused, naming the plan of each")


def check_truncate(binary, work, ckpt):
    before = shm()
    victim = os.path.join(work, "victim")
    shutil.rmtree(victim, ignore_errors=True)
    shutil.copytree(ckpt, victim)
    last = sorted(f for f in os.listdir(victim) if f.endswith(".safetensors"))[-1]
    path = os.path.join(victim, last)
    procs = launch(binary, victim, 4, f"coop-trunc-{os.getpid()}", work, ["--buffered"],
                   env_extra={"SHARDLOAD_COOP_TEST_PAUSE": "0:2:2"})
    wait_for(os.path.join(work, "rank-0.log"), "paused before wave 2")
    os.truncate(path, os.path.getsize(path) // 2)
    results = finish(procs)
    codes = [rep["error"]["code_name"] if rep and "error" in rep else None for _, _, rep, _ in results]
    assert "truncated" in codes, codes
    for rc, text, rep, _ in results:
        assert rc != 0, text
        assert rep["error"]["code_name"] in ("truncated", "peer_failed"), text
        assert "truncated" in text and last in text, text
    assert shm() == before
    print(f"{last} truncated during the load: {codes}")


def main():
    binary, work, case = sys.argv[1], sys.argv[2], sys.argv[3]
    work = os.path.join(work, case)
    os.makedirs(work, exist_ok=True)
    ckpt = os.path.join(work, "ckpt")
    config, full = generated(binary, ckpt)
    assert max(a.nbytes for a in full.values()) > STAGING
    if case.startswith("exact-"):
        _, world, mode = case.split("-")
        check_exact(binary, work, ckpt, config, full, int(world), mode)
    elif case == "kill":
        check_kill(binary, work, ckpt, 2)
    elif case == "kill-leader":
        check_kill(binary, work, ckpt, 0)
    elif case == "mismatch":
        check_mismatch(binary, work, ckpt)
    elif case == "truncate":
        check_truncate(binary, work, ckpt)
    else:
        raise AssertionError(f"unknown case {case}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError) as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
