#!/usr/bin/python3
"""bench_load.py: the load benchmark of shardload (perf/, never run by CTest).

Generates a Llama-like checkpoint with `shardload generate` (reused when it
already exists with the same size), then runs, interleaved over several
repetitions in one invocation: fio warm (the page-cache limit), `shardload
load` warm (first load and --repeat steady state), the three baselines of
shardload_baselines (mmap+memcpy, pread, two-thread pread pool), `shardload
load --direct` cold and fio O_DIRECT (the storage limit). Prints the median
GB/s of each contender, the four target ratios, and writes everything as JSON.
Standard library only; see perf/README.md.
"""

import argparse
import datetime
import json
import mmap
import os
import shutil
import statistics
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INDEX_NAME = "model.safetensors.index.json"
STAMP_NAME = "bench-stamp.json"
WARM_CHUNK = 4 << 20
PRIME_CHUNK = 16 << 20
PRIME_MARGIN = 1.1  # prime a bit more than a load allocates: arenas, staging buffers
SHARDLOAD_WARM_REPEAT = 5
SHARDLOAD_DIRECT_REPEAT = 3
BYTE_UNITS = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
              ("KB", 10**3), ("MB", 10**6), ("GB", 10**9), ("TB", 10**12),
              ("K", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12), ("B", 1)]
BUSY_SHARE = 0.1  # other work above 10% of one core during the run: say so
FIRST_LOAD_CONTENDERS = ["shardload", "mmap", "pread", "pool2"]

# Contenders in print order: key -> label.
CONTENDERS = [
    ("fio_warm", "fio warm: psync, 2 jobs, bs=1m (limit)"),
    ("shardload_first", "shardload load, warm: first load"),
    ("shardload_steady", "shardload load, warm: steady (--repeat)"),
    ("mmap", "baseline mmap+memcpy, 1 thread"),
    ("pread", "baseline pread 4 MiB, 1 thread"),
    ("pool2", "baseline pread pool, 2 threads, THP arena"),
    ("shardload_direct_first", "shardload load --direct, cold: first"),
    ("shardload_direct_steady", "shardload load --direct: steady"),
    ("fio_direct", "fio cold: io_uring O_DIRECT bs=4m qd=32 (limit)"),
]

# The targets: (label, numerator, denominator, minimum ratio).
TARGETS = [
    ("warm steady / fio warm", "shardload_steady", "fio_warm", 0.6),
    ("--direct steady / fio O_DIRECT", "shardload_direct_steady", "fio_direct", 0.9),
    ("first load / pread 1 thread", "shardload_first", "pread", 1.5),
    ("first load / pread pool 2 threads", "shardload_first", "pool2", 1.0),
]
# Printed alongside, without a target.
EXTRA_RATIOS = [
    ("first load / mmap+memcpy", "shardload_first", "mmap"),
    ("--direct first load / fio O_DIRECT", "shardload_direct_first", "fio_direct"),
]


class BenchError(Exception):
    pass


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_bytes(text):
    """Parses '8GB', '1.5GiB', '123' like shardload's ParseBytes."""
    scale = 1
    for suffix, factor in BYTE_UNITS:
        if len(text) > len(suffix) and text.endswith(suffix):
            text, scale = text[:-len(suffix)], factor
            break
    try:
        value = float(text) if scale != 1 or "." in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a byte count: " + text)
    if value <= 0:
        raise argparse.ArgumentTypeError("byte count must be positive")
    return int(round(value * scale))


def repo_path(path):
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_bytes, default=parse_bytes("8GB"),
                   help="checkpoint tensor bytes (default 8GB)")
    p.add_argument("--shards", type=int, default=2, help="shard count (default 2)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--dir", default=repo_path("build/perf-checkpoint"),
                   help="checkpoint directory, reused when its size matches")
    p.add_argument("--shardload", default=repo_path("build/tools/shardload"),
                   help="the shardload binary")
    p.add_argument("--baselines", default=repo_path("build/perf/shardload_baselines"),
                   help="the shardload_baselines binary")
    p.add_argument("--threads", type=int, help="--threads for shardload load (default: its own)")
    p.add_argument("--out", default=repo_path("build/perf-results.json"), help="JSON results")
    p.add_argument("--skip-shardload", action="store_true",
                   help="run only fio and the baselines (generate still uses shardload)")
    p.add_argument("--skip-fio", action="store_true", help="do not run fio")
    p.add_argument("--no-prime", action="store_true",
                   help="do not fault in and free memory before each first load")
    args = p.parse_args()
    if args.shards < 1 or args.reps < 1 or (args.threads is not None and args.threads < 1):
        p.error("--shards, --reps and --threads must be positive")
    return args


# ---------------------------------------------------------------- machine

def read_text(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def cpu_model():
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def meminfo_bytes(field):
    for line in read_text("/proc/meminfo").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def command_output(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class CpuMeter:
    """CPU seconds that other processes (and the host, as steal) took while
    the benchmark ran: on these 2-core machines other work skews results."""

    def __init__(self):
        self.start = self.sample()

    @staticmethod
    def sample():
        ticks = [int(v) for v in read_text("/proc/stat").split("\n", 1)[0].split()[1:9]]
        user, nice, system, _, _, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
        hz = os.sysconf("SC_CLK_TCK")
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return {"busy": (user + nice + system + irq + softirq) / hz, "steal": steal / hz,
                "own": own, "wall": t.elapsed}

    def report(self):
        end = self.sample()
        delta = {k: end[k] - self.start[k] for k in end}
        return {"wall_s": round(delta["wall"], 1),
                "other_cpu_s": round(max(0.0, delta["busy"] - delta["own"]), 1),
                "steal_s": round(delta["steal"], 1)}


def machine_info(fio):
    return {
        "nproc": os.cpu_count(),
        "mem_total_gib": round((meminfo_bytes("MemTotal") or 0) / (1 << 30), 1),
        "kernel": os.uname().release,
        "cpu_model": cpu_model(),
        "thp": read_text("/sys/kernel/mm/transparent_hugepage/enabled").strip(),
        "root": os.geteuid() == 0,
        "fio": command_output([fio, "--version"]) if fio else None,
        "git": command_output(["git", "-C", REPO_ROOT, "describe", "--always", "--dirty"]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------- checkpoint

def shard_files(directory):
    with open(os.path.join(directory, INDEX_NAME)) as f:
        weight_map = json.load(f)["weight_map"]
    return [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]


def max_shard_size(size, shards):
    # Slack so that greedy packing of whole tensors still gives `shards` files:
    # it must exceed half the largest tensor inside the layers (117 MB at 8B).
    return size // shards + size // (100 * shards) + 64 * 10**6


def stamp_for(args):
    return {"size": args.size, "shards": args.shards,
            "max_shard_size": max_shard_size(args.size, args.shards)}


def read_stamp(directory):
    try:
        with open(os.path.join(directory, STAMP_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def checkpoint_is_reusable(directory, stamp):
    if read_stamp(directory) != stamp:
        return False
    try:
        return all(os.path.isfile(p) for p in shard_files(directory))
    except (OSError, ValueError, KeyError):
        return False


def generate_checkpoint(args, stamp):
    if os.path.exists(args.dir):
        if read_stamp(args.dir) is None:
            raise BenchError(f"{args.dir} exists but was not made by bench_load.py; "
                             "remove it or pass another --dir")
        shutil.rmtree(args.dir)
    os.makedirs(os.path.dirname(os.path.abspath(args.dir)), exist_ok=True)
    cmd = [args.shardload, "generate", args.dir, "--size", str(args.size),
           "--max-shard-size", str(stamp["max_shard_size"]), "--json"]
    log("generating: " + " ".join(cmd))
    try:
        run_json(cmd)
    except BaseException:  # a partial checkpoint, without its stamp, would block reruns
        shutil.rmtree(args.dir, ignore_errors=True)
        raise
    with open(os.path.join(args.dir, STAMP_NAME), "w") as f:
        json.dump(stamp, f)


def prepare_checkpoint(args, notes):
    stamp = stamp_for(args)
    if checkpoint_is_reusable(args.dir, stamp):
        log(f"reusing checkpoint {args.dir}")
    else:
        generate_checkpoint(args, stamp)
    files = shard_files(args.dir)
    if len(files) != args.shards:
        notes.add(f"the writer made {len(files)} shards, not {args.shards}")
    return files


# ------------------------------------------------------------ cache state

def warm_page_cache(files):
    """Reads every shard once so that warm contenders find it cached."""
    buf = bytearray(WARM_CHUNK)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def prime_memory(nbytes):
    """Faults in and frees `nbytes` of anonymous memory (THP advised).

    These VMs hand idle guest memory back to the host after 10-30 s, and the
    first touch of such memory is up to 20x slower than of memory freed a
    moment ago. A contender that follows an idle spell would pay for that,
    one that follows another load would not; priming puts every first load in
    the same state: fresh memory to fault in, recently used by the guest."""
    region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        region.madvise(mmap.MADV_HUGEPAGE)
        zeros = bytes(PRIME_CHUNK)
        for _ in range(nbytes // PRIME_CHUNK):
            region.write(zeros)
    finally:
        region.close()


def drop_page_cache(notes):
    """Drops the page cache when root; otherwise notes that cold runs are warm."""
    if os.geteuid() != 0:
        notes.add("not root: cold runs are warm (page cache not dropped)")
        return
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        notes.add(f"cannot drop the page cache ({e.strerror}): cold runs are warm")


# ------------------------------------------------------------ contenders

def run_process(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise BenchError(f"cannot run {cmd[0]}: {e.strerror} (build it: see perf/README.md)")


def run_json(cmd):
    """Runs cmd; returns the JSON object on the last '{' line of its stdout."""
    proc = run_process(cmd)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{' '.join(cmd)}: no JSON line in its output")


def run_fio_json(cmd):
    proc = run_process(cmd)
    start = proc.stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise BenchError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    job = json.loads(proc.stdout[start:])["jobs"][0]
    if job.get("error"):
        raise BenchError(f"{' '.join(cmd)}: fio job error {job['error']}")
    read = job["read"]
    seconds = read["runtime"] / 1000.0
    return {"bytes": read["io_bytes"], "seconds": seconds,
            "gb_per_s": read["io_bytes"] / seconds / 1e9 if seconds > 0 else 0.0}


def fio_filename(files):
    return ":".join(p.replace(":", "\\:") for p in files)


def fio_common(fio, name, files):
    return [fio, "--name=" + name, "--filename=" + fio_filename(files), "--readonly",
            "--rw=read", "--file_service_type=sequential", "--group_reporting",
            "--output-format=json"]


def run_fio_warm(fio, files):
    # invalidate=0: fio would otherwise drop the files' page cache first.
    return run_fio_json(fio_common(fio, "warm", files) +
                        ["--ioengine=psync", "--bs=1m", "--numjobs=2", "--invalidate=0"])


class FioCold:
    """fio O_DIRECT io_uring; drops fixedbufs/registerfiles if fio rejects them."""

    def __init__(self, fio):
        self.fio = fio
        self.extra = ["--fixedbufs", "--registerfiles"]

    def run(self, files):
        base = fio_common(self.fio, "cold", files) + [
            "--ioengine=io_uring", "--direct=1", "--bs=4m", "--iodepth=32", "--numjobs=1"]
        try:
            return run_fio_json(base + self.extra)
        except BenchError:
            if not self.extra:
                raise
            log("note: fio rejected --fixedbufs/--registerfiles; running without them")
            self.extra = []
            return run_fio_json(base)


def run_shardload(args, direct, repeat):
    cmd = [args.shardload, "load", args.dir, "--json", "--repeat", str(repeat)]
    if direct:
        cmd.append("--direct")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        return run_json(cmd)
    except BenchError as e:
        raise BenchError(f"{e}\n(without a working `shardload load`, try --skip-shardload)")


def run_baseline(args, mode):
    return run_json([args.baselines, "--mode", mode, args.dir, "--json"])


# ------------------------------------------------------------ the run

class Recorder:
    """Collects each contender's GB/s per repetition and the raw outputs."""

    def __init__(self):
        self.values = {key: [] for key, _ in CONTENDERS}
        self.runs = []

    def add(self, rep, key, gb_per_s, raw):
        self.values[key].append(gb_per_s)
        self.runs.append({"rep": rep, "contender": key, "gb_per_s": gb_per_s, "raw": raw})
        log(f"  rep {rep}: {dict(CONTENDERS)[key]:<48} {gb_per_s:7.2f} GB/s")


class Bench:
    """One run: the checkpoint, the tools, and what was measured so far."""

    def __init__(self, args, files, fio, notes):
        self.args, self.files, self.fio, self.notes = args, files, fio, notes
        self.fio_cold = FioCold(fio) if fio else None
        self.rec = Recorder()
        size = sum(os.path.getsize(p) for p in files)
        self.prime_bytes = int(size * PRIME_MARGIN) // PRIME_CHUNK * PRIME_CHUNK + PRIME_CHUNK

    def before_first_load(self, cold):
        """Same memory state for every first load; then the cache state."""
        if not self.args.no_prime:
            prime_memory(self.prime_bytes)
        if cold:
            drop_page_cache(self.notes)
        else:
            warm_page_cache(self.files)

    def run_first_load(self, rep, name):
        self.before_first_load(cold=False)
        if name != "shardload":
            r = run_baseline(self.args, name)
            self.rec.add(rep, name, r["gb_per_s"], r)
            return
        r = run_shardload(self.args, direct=False, repeat=SHARDLOAD_WARM_REPEAT)
        self.rec.add(rep, "shardload_first", r["gb_per_s"], r)
        self.rec.add(rep, "shardload_steady", r["steady_gb_per_s"], None)

    def run_direct(self, rep):
        self.before_first_load(cold=True)
        r = run_shardload(self.args, direct=True, repeat=SHARDLOAD_DIRECT_REPEAT)
        self.rec.add(rep, "shardload_direct_first", r["gb_per_s"], r)
        self.rec.add(rep, "shardload_direct_steady", r["steady_gb_per_s"], None)

    def run_fio(self, rep, cold):
        if cold:
            drop_page_cache(self.notes)
            r = self.fio_cold.run(self.files)
        else:
            warm_page_cache(self.files)
            r = run_fio_warm(self.fio, self.files)
        self.rec.add(rep, "fio_direct" if cold else "fio_warm", r["gb_per_s"], r)

    def run_repetition(self, rep):
        """fio warm, the four warm first loads (their order rotates with the
        repetition so that none always runs in the same slot), --direct cold,
        fio cold."""
        if self.fio:
            self.run_fio(rep, cold=False)
        shift = (rep - 1) % len(FIRST_LOAD_CONTENDERS)
        for name in FIRST_LOAD_CONTENDERS[shift:] + FIRST_LOAD_CONTENDERS[:shift]:
            if not (name == "shardload" and self.args.skip_shardload):
                self.run_first_load(rep, name)
        if not self.args.skip_shardload:
            self.run_direct(rep)
        if self.fio:
            self.run_fio(rep, cold=True)


def check_consistency(rec, notes):
    """The baselines must agree with each other (and with shardload) on what
    they loaded; a mismatch means one of them is wrong."""
    sums = {(r["raw"]["bytes"], r["raw"]["checksum"]) for r in rec.runs
            if r["contender"] in ("mmap", "pread", "pool2")}
    if len(sums) > 1:
        notes.add(f"WARNING: baselines disagree on bytes/checksum: {sorted(sums)}")
    byte_counts = {b for b, _ in sums}
    byte_counts |= {r["raw"]["bytes"] for r in rec.runs if r["contender"] == "shardload_first"}
    if len(byte_counts) > 1:
        notes.add(f"WARNING: contenders loaded different byte counts: {sorted(byte_counts)}")


# ------------------------------------------------------------ report

def summarize(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def ratio_rows(summary):
    rows = []
    for label, num, den, target in TARGETS + [(*extra, None) for extra in EXTRA_RATIOS]:
        a, b = summary.get(num), summary.get(den)
        ratio = a["median"] / b["median"] if a and b and b["median"] > 0 else None
        verdict = None if ratio is None or target is None else ("PASS" if ratio >= target
                                                                  else "MISS")
        rows.append({"ratio": label, "numerator": num, "denominator": den, "value": ratio,
                     "target": target, "result": verdict})
    return rows


def print_report(report):
    m, ck = report["machine"], report["checkpoint"]
    print(f"\nshardload load benchmark, {report['config']['reps']} interleaved repetitions")
    print(f"checkpoint: {ck['bytes'] / 1e9:.2f} GB of tensors in {ck['shards']} shards "
          f"({ck['dir']})")
    print(f"machine: {m['nproc']} CPUs, {m['mem_total_gib']} GiB, kernel {m['kernel']}, "
          f"{m['cpu_model']}, THP {m['thp']}")
    cpu = m["cpu"]
    print(f"date: {m['date']}  git: {m['git']}  during the run: other processes "
          f"{cpu['other_cpu_s']} CPU-s, steal {cpu['steal_s']} s, wall {cpu['wall_s']} s")
    print(f"\n{'contender':<50}{'median':>8}{'min':>8}{'max':>8}  GB/s")
    for key, label in CONTENDERS:
        s = report["summary"].get(key)
        if s:
            print(f"{label:<50}{s['median']:8.2f}{s['min']:8.2f}{s['max']:8.2f}")
        else:
            print(f"{label:<50}{'skipped':>8}")
    print(f"\n{'ratio of medians':<50}{'value':>8}{'target':>8}  result")
    for r in report["ratios"]:
        value = f"{r['value']:8.2f}" if r["value"] is not None else f"{'n/a':>8}"
        target = f"{'>=' + format(r['target'], '.1f'):>8}" if r["target"] is not None else " " * 8
        result = r["result"] or ("n/a" if r["target"] is not None else "")
        print(f"{r['ratio']:<50}{value}{target}  {result}")
    for note in report["notes"]:
        print("note: " + note)
    print(f"\nresults: {report['out']}")


def checkpoint_bytes(rec, files):
    """Tensor bytes as the loaders counted them, else the shard file sizes."""
    for r in rec.runs:
        if r["contender"] in ("shardload_first", "mmap", "pread", "pool2"):
            return r["raw"]["bytes"]
    return sum(os.path.getsize(p) for p in files)


def preflight_notes(args, fio):
    notes = set()
    if fio is None:
        notes.add("fio skipped (" + ("--skip-fio" if args.skip_fio else "not installed") + ")")
    if args.skip_shardload:
        notes.add("shardload load skipped (--skip-shardload)")
    if args.no_prime:
        notes.add("--no-prime: first loads find memory in whatever state the last run left")
    available = meminfo_bytes("MemAvailable")
    if available and 2 * args.size > 0.9 * available:
        notes.add(f"--size {args.size / 1e9:.1f} GB: the page cache and one loaded copy may not "
                  f"both fit in the {available / 1e9:.1f} GB available; warm runs may be cold")
    return notes


def busy_note(cpu):
    if cpu["other_cpu_s"] + cpu["steal_s"] > BUSY_SHARE * cpu["wall_s"]:
        return (f"machine busy: other processes used {cpu['other_cpu_s']} CPU-s and the host "
                f"stole {cpu['steal_s']} s in {cpu['wall_s']} s; rerun when idle")
    return None


def make_report(args, machine, files, rec, notes):
    summary = {key: summarize(rec.values[key]) for key, _ in CONTENDERS}
    return {
        "machine": machine,
        "config": {k: getattr(args, k) for k in ("size", "shards", "reps", "threads",
                                                   "skip_shardload", "skip_fio", "no_prime")},
        "checkpoint": {"dir": args.dir, "shards": len(files), "files": files,
                       "bytes": checkpoint_bytes(rec, files)},
        "summary": summary,
        "ratios": ratio_rows(summary),
        "notes": sorted(notes),
        "runs": rec.runs,
        "out": args.out,
    }


def main():
    args = parse_args()
    for attr in ("dir", "shardload", "baselines", "out"):
        setattr(args, attr, os.path.abspath(getattr(args, attr)))
    fio = None if args.skip_fio else shutil.which("fio")
    notes = preflight_notes(args, fio)
    machine = machine_info(fio)
    files = prepare_checkpoint(args, notes)
    bench = Bench(args, files, fio, notes)
    meter = CpuMeter()
    for rep in range(1, args.reps + 1):
        log(f"repetition {rep}/{args.reps}")
        bench.run_repetition(rep)
    machine["cpu"] = meter.report()
    check_consistency(bench.rec, notes)
    busy = busy_note(machine["cpu"])
    if busy:
        notes.add(busy)
    report = make_report(args, machine, files, bench.rec, notes)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print_report(report)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench_load.py: {e}", file=sys.stderr)
        sys.exit(1)
