#!/usr/bin/env python3
"""The cooperation benchmark (issue 12, "the ranks of a node cooperate"):
N = 1, 2, 4, 8 ranks of a tensor-parallel job (HF plan, world N) launched by
environment on one node, as torchrun launches them (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, TORCHELASTIC_RUN_ID), against ONE process's
full load of the same checkpoint in the same page-cache state, interleaved:

  warm           default (auto) mode, the checkpoint read just before
  warm-staged    --buffered, warm likewise (cooperation then stages: to
                 compare with the auto mode's choice, each rank reading its
                 own bytes from the page cache)
  cold-auto      default (auto) mode, evicted as below (cold ranges are
                 read with O_DIRECT)
  cold-buffered  --buffered, the checkpoint's pages evicted (posix_fadvise
                 DONTNEED on its files only: the page cache is shared)
  cold-direct    --direct, evicted likewise

Time: wall clock from launching the ranks until the last one has exited
(so until all hold their slices, plus process exit). Disk bytes: the ranks'
own block-device reads (getrusage ru_inblock of each, summed; O_DIRECT
included), and the whole device's (/proc/diskstats, others' reads too). --no-cooperate runs the
same N ranks each alone (what a job did before) for comparison.
Targets: N ranks <= 1.5x one full load (aim 1.2x); disk bytes of a cold job
<= 1.05x the checkpoint. Prints medians and ranges; writes raw runs to --out.

--launchers env mpi also launches the N ranks with `mpirun --oversubscribe
-np N shardload load ... --mpi` (contenders mpi-N; their time includes
mpirun's start-up; each rank's peak RSS is the largest of mpirun's process
tree, and the job's own block-device reads those of the tree, from wait4).

  python3 perf/bench_coop.py --dir /work/perf-data/llama8g \\
      --shardload build/tools/shardload --reps 3 [--ranks 1 2 4 8] [--alone] \\
      [--launchers env mpi]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_mode import disk_of, disk_read_bytes, evict, shard_files  # noqa: E402

STATES = {"warm": [], "warm-staged": ["--buffered"], "cold-auto": [],
          "cold-buffered": ["--buffered"], "cold-direct": ["--direct"]}


def log(message):
    print(message, file=sys.stderr, flush=True)


def prepare(args, files, state):
    if state.startswith("warm"):
        subprocess.run([args.shardload, "load", args.dir, "--buffered"], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        evict(files)


# mpirun as root (CI containers) and with more ranks than cores.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def run_mpi_job(args, flags, ranks, job):
    """run_job's answer for N ranks under mpirun (--mpi): each rank writes its
    JSON report to a file of its own."""
    out = os.path.join(os.path.dirname(os.path.abspath(args.out)), job)
    os.makedirs(out, exist_ok=True)
    script = ('exec "$0" load "$1" --plan hf --mpi "$@" >"$OUT/rank-$OMPI_COMM_WORLD_RANK.json"')
    command = ["mpirun", "--oversubscribe", "-np", str(ranks), "sh", "-c",
               script.replace("$1", args.dir), args.shardload] + flags
    start = time.monotonic()
    proc = subprocess.Popen(command, env=dict(os.environ, OUT=out, **MPI_ENV),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # mpirun and the ranks it reaped
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"mpirun failed ({proc.returncode}):\n{err}")
    rss = usage.ru_maxrss * 1024
    reports = []
    for r in range(ranks):
        with open(os.path.join(out, f"rank-{r}.json")) as f:
            report = json.loads(f.read().strip().splitlines()[-1])
        report["max_rss_bytes"] = rss
        # mpirun's tree's block-device reads, counted once (on rank 0's report).
        report["inblock_bytes"] = usage.ru_inblock * 512 if r == 0 else 0
        reports.append(report)
    return seconds, reports


def run_job(args, state, ranks, cooperate, job, launcher="env"):
    """Wall seconds until every rank exited, and each rank's JSON report."""
    flags = STATES[state] + ["--json"]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    if launcher == "mpi":
        extra = ([] if cooperate else ["--no-cooperate"]) + \
            (["--staging", args.staging] if args.staging else [])
        return run_mpi_job(args, flags + extra, ranks, job)
    procs = []
    start = time.monotonic()
    if ranks == 0:  # one process, the whole checkpoint
        procs.append(subprocess.Popen([args.shardload, "load", args.dir] + flags,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for r in range(ranks):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(ranks), LOCAL_RANK=str(r),
                   LOCAL_WORLD_SIZE=str(ranks), TORCHELASTIC_RUN_ID=job)
        extra = [] if cooperate else ["--no-cooperate"]
        if args.staging:
            extra += ["--staging", args.staging]
        procs.append(subprocess.Popen([args.shardload, "load", args.dir, "--plan", "hf"] + flags +
                                      extra, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    reports = []
    for p in procs:
        out = p.stdout.read()
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)  # the rank's peak RSS
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"a rank failed ({p.returncode}):\n{err}")
        report = json.loads(out.strip().splitlines()[-1])
        report["max_rss_bytes"] = usage.ru_maxrss * 1024
        report["inblock_bytes"] = usage.ru_inblock * 512  # its own block-device reads
        reports.append(report)
    return time.monotonic() - start, reports


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/work/perf-data/llama8g")
    p.add_argument("--shardload", default="build/tools/shardload")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--states", nargs="+", default=["warm", "cold-buffered", "cold-direct"],
                   choices=list(STATES))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--staging", default="")
    p.add_argument("--staging-bytes", default=str(1 << 30), help="what --staging amounts to")
    p.add_argument("--alone", action="store_true", help="also run the ranks without cooperating")
    p.add_argument("--launchers", nargs="+", default=["env"], choices=["env", "mpi"],
                   help="how the ranks are launched: environment (coop-N), mpirun --mpi (mpi-N)")
    p.add_argument("--out", default="build/bench-coop.json")
    args = p.parse_args()
    files = shard_files(args.dir)
    disk = disk_of(files[0])
    size = sum(map(os.path.getsize, files))
    log(f"{len(files)} shards, {size / 1e9:.2f} GB; disk {disk}; load {os.getloadavg()}")
    prefix = {"env": "coop", "mpi": "mpi"}
    contenders = [("full", 0, True, "env")] + [
        (f"{prefix[launcher]}-{n}", n, True, launcher)
        for launcher in args.launchers for n in args.ranks]
    if args.alone:
        contenders += [(f"alone-{n}", n, False, "env") for n in args.ranks if n > 1]
    runs = {(s, c[0]): [] for s in args.states for c in contenders}
    for rep in range(args.reps):
        for state in args.states:
            shift = rep % len(contenders)
            for name, ranks, cooperate, launcher in contenders[shift:] + contenders[:shift]:
                prepare(args, files, state)
                before = disk_read_bytes(disk)
                seconds, reports = run_job(args, state, ranks, cooperate,
                                           f"bench-{os.getpid()}-{rep}-{state}-{name}", launcher)
                disk_bytes = disk_read_bytes(disk) - before  # the whole device (others too)
                own = sum(r["inblock_bytes"] for r in reports)
                how = reports[0].get("cooperation", {}).get("how", "")
                # Each rank's peak RSS over its local bytes + staging share.
                share = (int(args.staging_bytes) // max(ranks, 1)) if ranks else 0
                over = max(r["max_rss_bytes"] - r["bytes"] - share for r in reports)
                how += f"; peak RSS - local - staging share: {over / 2**20:.0f} MiB"
                runs[(state, name)].append({"seconds": seconds, "disk_bytes": disk_bytes,
                                            "own_disk_bytes": own,
                                            "load": os.getloadavg()[0], "reports": reports})
                log(f"  rep {rep + 1} {state:<13} {name:<9} {seconds:6.2f} s  disk "
                    f"{disk_bytes / 1e9:5.2f} GB (ours {own / 1e9:5.2f} GB)  load "
                    f"{os.getloadavg()[0]:.1f}  {how}")
    summary = {}
    for state in args.states:
        full = statistics.median(r["seconds"] for r in runs[(state, "full")])
        for name, _, _, _ in contenders:
            secs = [r["seconds"] for r in runs[(state, name)]]
            disk_x = [r["own_disk_bytes"] / size for r in runs[(state, name)]]
            med = statistics.median(secs)
            summary[f"{state} {name}"] = {
                "median_s": med, "min_s": min(secs), "max_s": max(secs),
                "x_full": med / full if full else 0,
                "disk_x_checkpoint": statistics.median(disk_x)}
            print(f"{state:<13} {name:<9} median {med:6.2f} s [{min(secs):.2f}-{max(secs):.2f}]"
                  f"  {med / full:5.2f}x full  disk {statistics.median(disk_x):.2f}x checkpoint")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"summary": summary,
                   "runs": {f"{s} {n}": v for (s, n), v in runs.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
