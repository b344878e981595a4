#!/usr/bin/python3
"""Cooperating ranks compare the files they load, not the path strings
naming them (issue 27, item 5): each shard's device, inode, size and
modification time. Ranks of the CLI launched by environment as in
coop_oracle.py, on its generated checkpoint:

  abs-rel        ranks 0 and 2 name the checkpoint by its absolute path,
                 ranks 1 and 3 by a relative one from its parent directory:
                 they cooperate, each rank byte-exact against numpy's slices.
  same-relative  ranks 0 and 1 run in directory a, ranks 2 and 3 in b, all
                 naming "ckpt": b/ckpt holds other bytes in files of the same
                 names, sizes and modification times as a/ckpt. Every rank
                 is refused with peer_mismatch naming a shard.

usage: identity_oracle.py SHARDLOAD_BINARY WORK_DIR CASE
Exit 0 on success, 1 on a mismatch, 77 when numpy is missing."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coop_oracle as co  # exits 77 without numpy

WORLD = 4


def in_dir(directory, ckpt_arg):
    """per_rank: run in DIRECTORY, naming the checkpoint CKPT_ARG."""
    def per_rank(r, args):
        args = args[:2] + [ckpt_arg] + args[3:]  # [binary, "load", CKPT, ...]
        return ["sh", "-c", 'cd "$0" && exec "$@"', directory(r), *args]
    return per_rank


def check_abs_rel(binary, work):
    ckpt = os.path.join(work, "ckpt")
    config, full = co.generated(binary, ckpt)
    before = co.shm()
    procs = co.launch(binary, ckpt, WORLD, f"coop-absrel-{os.getpid()}", work, ["--buffered"],
                      per_rank=lambda r, args: args if r % 2 == 0 else
                      in_dir(lambda _: work, "ckpt")(r, args))
    results = co.finish(procs)
    for r, (rc, text, report, _) in enumerate(results):
        assert rc == 0, f"rank {r} failed: {text}"
        got, _ = co.read_checkpoint(procs[r][1])
        assert sorted(got) == sorted(full), f"rank {r}: tensor names differ"
        for name, arr in full.items():
            want = co.expected(name, arr, config, WORLD, r)
            assert co.np.array_equal(got[name], want), f"{name}: rank {r} differs"
    assert co.shm() == before, f"/dev/shm changed: {co.shm() ^ before}"
    print("absolute and relative paths of one checkpoint: cooperated, every rank byte-exact")


def other_bytes_same_facts(src, dst):
    """DST: SRC's files with every data byte of each shard inverted, same
    sizes, and SRC's modification times."""
    shutil.copytree(src, dst)
    for name in sorted(os.listdir(dst)):
        path = os.path.join(dst, name)
        if name.endswith(".safetensors"):
            with open(path, "r+b") as f:
                n = int.from_bytes(f.read(8), "little")
                f.seek(8 + n)
                data = f.read()
                f.seek(8 + n)
                f.write(bytes(b ^ 0xFF for b in data))
        st = os.stat(os.path.join(src, name))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.path.getsize(path) == st.st_size


def check_same_relative(binary, work):
    a, b = os.path.join(work, "a"), os.path.join(work, "b")
    shutil.rmtree(b, ignore_errors=True)
    os.makedirs(a, exist_ok=True)
    co.generated(binary, os.path.join(a, "ckpt"))
    other_bytes_same_facts(os.path.join(a, "ckpt"), os.path.join(b, "ckpt"))
    before = co.shm()
    procs = co.launch(binary, os.path.join(a, "ckpt"), WORLD, f"coop-samerel-{os.getpid()}",
                      work, ["--buffered"], per_rank=in_dir(lambda r: a if r < 2 else b, "ckpt"))
    results = co.finish(procs)
    for r, (rc, text, report, _) in enumerate(results):
        assert rc != 0 and report and report["error"]["code_name"] == "peer_mismatch", text
        assert "has shard model-" in text and "inode" in text, text
    assert co.shm() == before, f"/dev/shm changed: {co.shm() ^ before}"
    print("other files under the same relative path, sizes and times: every rank refused")


def main():
    binary, work, case = sys.argv[1], sys.argv[2], sys.argv[3]
    work = os.path.join(os.path.abspath(work), "identity-" + case)
    os.makedirs(work, exist_ok=True)
    if case == "abs-rel":
        check_abs_rel(binary, work)
    elif case == "same-relative":
        check_same_relative(binary, work)
    else:
        raise AssertionError(f"unknown case {case}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError) as e:
        print(f"MISMATCH: {e}")
        sys.exit(1)
