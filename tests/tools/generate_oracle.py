#!/usr/bin/python3
"""Independent oracle for `shardload generate`, the writer and `shardload
load --save`: parses every shard with json + numpy (no shardload code) and
recomputes each BF16 element from (seed, tensor name, element index). The
generated checkpoint is then loaded with several engine settings and saved,
and every saved tensor is verified the same way.

usage: generate_oracle.py SHARDLOAD_BINARY WORK_DIR
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

SEED = 7


def splitmix(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def name_key(seed, name):
    h = 1469598103934665603 ^ seed
    for c in name.encode():
        h = ((h ^ c) * 1099511628211) % (1 << 64)
    return h


def expected_bf16(seed, name, count):
    idx = np.arange(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        r = splitmix(idx + np.uint64(name_key(seed, name)))
    exponent = np.uint64(112) + (r >> np.uint64(8)) % np.uint64(16)
    return ((r & np.uint64(0x807F)) | (exponent << np.uint64(7))).astype("<u2")


def read_shard(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    text = blob[8:8 + n].decode("utf-8")
    assert n % 8 == 0 and text.rstrip(" ").endswith("}"), f"{path}: header not space-padded to 8"
    header = json.loads(text)
    data = blob[8 + n:]
    return header, data


def check_shard(path, seed):
    header, data = read_shard(path)
    assert header.pop("__metadata__") == {"format": "pt"}, path
    names = sorted(header)
    assert list(header) == names, f"{path}: tensors not in name order"
    end = 0
    for name in names:
        info = header[name]
        begin, stop = info["data_offsets"]
        assert begin == end, f"{path}: {name} not contiguous"
        count = int(np.prod(info["shape"], dtype=np.uint64))
        assert info["dtype"] == "BF16" and stop - begin == 2 * count, name
        got = np.frombuffer(data[begin:stop], dtype="<u2")
        want = expected_bf16(seed, name, count)
        if not np.array_equal(got, want):
            bad = int(np.argmax(got != want))
            raise AssertionError(f"{path}: {name}[{bad}] = {got[bad]:#x}, want {want[bad]:#x}")
        end = stop
    assert end == len(data), f"{path}: trailing bytes"
    return {name: header[name] for name in names}


def check_checkpoint(out, seed, min_shards=1):
    """Verifies an index + shards checkpoint; returns (tensor count, bytes)."""
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        index = json.load(f)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= min_shards, shards
    total = 0
    for shard in shards:
        tensors = check_shard(os.path.join(out, shard), seed)
        assert {t for t, s in index["weight_map"].items() if s == shard} == set(tensors), shard
        total += sum(t["data_offsets"][1] - t["data_offsets"][0] for t in tensors.values())
    assert index["metadata"]["total_size"] == total
    return len(index["weight_map"]), total


LOAD_SETTINGS = [
    [],
    ["--backend", "pread"],
    ["--direct"],
    ["--direct", "--backend", "pread"],
    ["--threads", "1", "--queue-depth", "1", "--chunk-size", "4KiB"],
    ["--threads", "8", "--queue-depth", "64", "--chunk-size", "64KiB", "--repeat", "2"],
]


def check_load_save(binary, work, src, seed, count):
    """Loads `src` with each engine setting, saves, and verifies the copy."""
    for i, flags in enumerate(LOAD_SETTINGS):
        dst = os.path.join(work, f"saved-{i}")
        subprocess.run([binary, "load", src, "--save", dst, "--max-shard-size", "1MB"] + flags,
                       check=True, stdout=subprocess.DEVNULL)
        n, _ = check_checkpoint(dst, seed, min_shards=2)
        assert n == count, f"load {flags}: saved {n} of {count} tensors"
    dst = os.path.join(work, "saved-select")
    subprocess.run([binary, "load", src, "--save", dst, "--select", "model.layers.*.mlp.**",
                    "--select", "lm_head.weight"], check=True, stdout=subprocess.DEVNULL)
    header = check_shard(os.path.join(dst, "model.safetensors"), seed)
    want = 1 + 3 * (count - 3) // 9
    assert "lm_head.weight" in header and len(header) == want, sorted(header)
    assert all(".mlp." in n or n == "lm_head.weight" for n in header), sorted(header)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    out = os.path.join(work, "ckpt")
    subprocess.run([binary, "generate", out, "--size", "12MB", "--max-shard-size", "4MB",
                    "--seed", str(SEED)], check=True, stdout=subprocess.DEVNULL)
    count, total = check_checkpoint(out, SEED, min_shards=3)
    with open(os.path.join(out, "config.json")) as f:
        layers = json.load(f)["num_hidden_layers"]
    assert count == 3 + 9 * layers
    check_load_save(binary, work, out, SEED, count)
    print(f"ok: {count} tensors, {total} bytes verified as generated and after "
          f"{len(LOAD_SETTINGS) + 1} loads")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
