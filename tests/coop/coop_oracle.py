#!/usr/bin/python3
"""Cooperative loads launched by environment, as torchrun launches ranks:
N processes of `shardload load CKPT --plan hf` with RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE and TORCHELASTIC_RUN_ID set, on a small
generated Llama-like checkpoint with a staging far smaller than its largest
tensor (many waves). Each rank's --save output is compared with numpy's
slices of the full tensors (the independent slicer of split_oracle.py), and
/dev/shm must hold nothing new afterwards.

stall, stall-leader: a rank stopped (SIGSTOP) once the load is under way is
named with its pid by every other rank within the peer timeout; after SIGCONT
it fails too, and no socket, process or staging memfd of the job is left.
other-user: ranks 0, 2, 3 as root, rank 1 as uid 65534 (setpriv) from another
directory holding other bytes under the same relative path, same sizes and
mtimes: it fails saying the job is another user's, a hand-made client of that
user claiming rank 1 on the job's socket is refused, and once the real rank 1
comes every root rank is byte-exact (skipped, 77, unless root with setpriv).

usage: coop_oracle.py SHARDLOAD_BINARY WORK_DIR CASE
CASE: exact-W-MODE (W ranks, MODE buffered|direct|auto), kill, kill-leader, mismatch,
truncate, stall, stall-leader, other-user. Exit 0 on success, 1 on a mismatch, 77 when
numpy (or, for other-user, another user) is missing.
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



def start_rank(binary, ckpt, r, world, job, work, extra=(), env_extra=None, per_rank=None,
               out=None, prefix=(), cwd=None, log_name=None, timeout=30):
    """Starts rank R of WORLD (its command after PREFIX, in CWD); returns
    (Popen, out_dir, log)."""
    out = out or os.path.join(work, f"out-{r}")
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
               LOCAL_WORLD_SIZE=str(world), TORCHELASTIC_RUN_ID=job)
    env.update(env_extra or {})
    args = [binary, "load", ckpt, "--plan", "hf", "--staging", str(STAGING), "--json",
            "--threads", "1", "--peer-timeout", str(timeout), "--save", out, *extra]
    if per_rank:
        args = per_rank(r, args)
    log = open(os.path.join(work, log_name or f"rank-{r}.log"), "w+")
    return (subprocess.Popen([*prefix, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                             cwd=cwd), out, log)


def launch(binary, ckpt, world, job, work, extra=(), per_rank=None, env_extra=None, timeout=30):
    """Starts WORLD ranks; returns [(Popen, out_dir, log)]."""
    procs = [start_rank(binary, ckpt, r, world, job, work, extra, env_extra, per_rank,
                        timeout=timeout)
             for r in range(world)]
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


def holds_staging(pid):
    """Whether process PID holds the node's staging memfd."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if "memfd:shardload-staging" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                return True
        except OSError:
            pass
    return False


def leftovers(job, leader_pid):
    """What of JOB is still on the node: its abstract sockets (the node's
    channel, the leader's hub) and processes of the job (its run id in their
    environment), with any staging memfd they hold."""
    found = []
    with open("/proc/net/unix") as f:
        for line in f:
            name = line.split()[-1] if len(line.split()) > 7 else ""
            if name.endswith("-" + job) or name.startswith(f"@shardload-hub-{leader_pid}-"):
                found.append(f"socket {name}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"TORCHELASTIC_RUN_ID={job}\0".encode() not in f.read():
                    continue
        except OSError:
            continue
        found.append(f"process {pid}" + (" holding the staging memfd" if holds_staging(pid) else ""))
    return found


def check_stall(binary, work, ckpt, victim):
    """VICTIM (2, or 0: the leader, whose process holds the hub) is stopped
    once it holds the staging (the load is under way)."""
    timeout = 3
    before = shm()
    job = f"coop-stall-{os.getpid()}-{victim}"
    procs = launch(binary, ckpt, 4, job, work, ["--buffered"], timeout=timeout)
    pid = procs[victim][0].pid
    try:
        stalled(procs, victim, timeout)
    finally:  # never leave a stopped process behind
        if procs[victim][0].poll() is None:
            procs[victim][0].kill()
            os.kill(pid, signal.SIGCONT)
            procs[victim][0].wait()
    left = leftovers(job, procs[0][0].pid)
    assert not left, f"left behind: {left}"
    assert shm() == before, f"/dev/shm changed: {shm() ^ before}"


def stalled(procs, victim, timeout):
    """Stops VICTIM once the load is under way, checks how the others fail,
    then lets it go on (to fail too)."""
    pid = procs[victim][0].pid
    end = time.monotonic() + 30
    while not holds_staging(pid):
        assert time.monotonic() < end and procs[victim][0].poll() is None, "no staging seen"
        time.sleep(0.001)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    others = [p for r, p in enumerate(procs) if r != victim]
    _STARTED[id(others)] = start_of(procs)
    results = finish(others)
    elapsed = max(t for _, _, _, t in results) - (stopped - start_of(procs))
    named = (f"rank 0 (local rank 0, pid {pid}, the leader)" if victim == 0
             else f"rank {victim} (local rank {victim}, pid {pid})")
    healthy = [r for r in range(4) if r != victim]
    for r, (rc, text, report, _) in zip(healthy, results):
        assert rc != 0 and report and report["error"]["code_name"] == "peer_failed", text
        assert named in text and "stopped or hung" in text, text
        for h in healthy:  # nobody healthy is blamed
            assert f"rank {h} (local rank {h}, pid" not in text, text
    assert elapsed < timeout + 5, f"the others took {elapsed:.1f} s to fail"
    os.kill(pid, signal.SIGCONT)
    rc, text, _, _ = finish([procs[victim]])[0]
    assert rc != 0, f"the stopped rank succeeded after its job failed: {text}"
    print(f"rank {victim} stopped: the others failed naming it (pid {pid}) within "
          f"{elapsed:.2f} s of a {timeout} s timeout; nothing left behind")


AS_NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")

# A hand-made client of another user: says hello as local member 1 of 4 on
# the job's socket (the ConnectLocal frame) and prints what comes back.
INTRUDER = """
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0" + sys.argv[1])
s.sendall(struct.pack("<IIIIQ", 0x10, 16, 1, 4, os.getpid()))
s.settimeout(10)
data = b""
while True:
    try:
        chunk = s.recv(4096)
    except socket.timeout:
        break
    if not chunk:
        break
    data += chunk
kind, n = struct.unpack("<II", data[:8]) if len(data) >= 8 else (None, 0)
print("REFUSED" if kind == 0x12 else f"ANSWERED {kind}", data[8:8 + n].decode(errors="replace"))
"""


def listed(name):
    with open("/proc/net/unix") as f:
        return any(line.rstrip().endswith("@" + name) for line in f)


def other_users_copy(ckpt, theirs):
    """THEIRS: CKPT with every tensor byte changed, same sizes and mtimes,
    owned by uid 65534."""
    shutil.rmtree(theirs, ignore_errors=True)
    shutil.copytree(ckpt, theirs)
    for f in os.listdir(theirs):
        path = os.path.join(theirs, f)
        if f.endswith(".safetensors"):
            with open(path, "r+b") as g:
                start = 8 + int.from_bytes(g.read(8), "little")
                g.seek(start)
                data = bytes(b ^ 0x5A for b in g.read())
                g.seek(start)
                g.write(data)
        st = os.stat(os.path.join(ckpt, f))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    for root, dirs, files in os.walk(os.path.dirname(theirs)):
        for x in [root, *(os.path.join(root, y) for y in dirs + files)]:
            os.chown(x, 65534, 65534)


def check_other_user(binary, work, ckpt, config, full):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("skipped: needs root and setpriv to run a rank as another user")
        return 77
    before = shm()
    mine, theirs = os.path.join(work, "mine"), os.path.join(work, "theirs")
    shutil.rmtree(mine, ignore_errors=True)
    os.makedirs(mine)
    shutil.copytree(ckpt, os.path.join(mine, "ckpt"))
    other_users_copy(ckpt, os.path.join(theirs, "ckpt"))
    job = f"coop-other-{os.getpid()}"
    procs = {r: start_rank(binary, "ckpt", r, 4, job, work, ["--buffered"], cwd=mine, timeout=60)
             for r in (0, 2, 3)}
    _STARTED[id(procs)] = time.monotonic()
    stranger = start_rank(binary, "ckpt", 1, 4, job, work, ["--buffered"], cwd=theirs, timeout=3,
                          out=os.path.join(theirs, "out"), prefix=AS_NOBODY,
                          log_name="rank-1-other-user.log")
    rc, text, report, _ = finish([stranger])[0]
    assert rc != 0 and report and report["error"]["code_name"] == "peer_failed", text
    assert f"a job '{job}' of another user (uid 0) runs on this node" in text, text
    end = time.monotonic() + 30
    while not listed(f"shardload-0-{job}"):
        assert time.monotonic() < end, "the leader never listened"
        time.sleep(0.01)
    crafted = subprocess.run([*AS_NOBODY, sys.executable, "-c", INTRUDER, f"shardload-0-{job}"],
                             capture_output=True, text=True, timeout=30)
    assert crafted.stdout.startswith(f"REFUSED job '{job}' on this node belongs to another user "
                                     "(uid 0)"), crafted
    assert "(uid 65534, pid " in crafted.stdout, crafted
    procs[1] = start_rank(binary, "ckpt", 1, 4, job, work, ["--buffered"], cwd=mine, timeout=60)
    ordered = [procs[r] for r in range(4)]
    _STARTED[id(ordered)] = _STARTED[id(procs)]
    for r, (rc, text, report, _) in enumerate(finish(ordered)):
        assert rc == 0, f"rank {r} failed: {text}"
        got, _ = read_checkpoint(ordered[r][1])
        for name, arr in full.items():
            want = expected(name, arr, config, 4, r)
            assert np.array_equal(got[name], want), f"{name}: rank {r} has other bytes"
    assert shm() == before, f"/dev/shm changed: {shm() ^ before}"
    print("another user's rank 1 was refused (twice); with the real rank 1 every rank is exact")
    return 0


def main():
    binary, work, case = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
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
    elif case == "stall":
        check_stall(binary, work, ckpt, 2)
    elif case == "stall-leader":
        check_stall(binary, work, ckpt, 0)
    elif case == "other-user":
        return check_other_user(binary, work, ckpt, config, full)
    else:
        raise AssertionError(f"unknown case {case}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError) as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
