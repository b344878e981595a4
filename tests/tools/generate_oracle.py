#!/usr/bin/python3
"""Independent oracle for `shardload generate` and the writer: parses every
shard with json + numpy (no shardload code) and recomputes each BF16 element
from (seed, tensor name, element index).

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


def main():
    binary, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    out = os.path.join(work, "ckpt")
    subprocess.run([binary, "generate", out, "--size", "6MB", "--max-shard-size", "2MB",
                    "--seed", str(SEED)], check=True)
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        index = json.load(f)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3, shards
    total = 0
    for shard in shards:
        tensors = check_shard(os.path.join(out, shard), SEED)
        assert {t for t, s in index["weight_map"].items() if s == shard} == set(tensors), shard
        total += sum(t["data_offsets"][1] - t["data_offsets"][0] for t in tensors.values())
    assert index["metadata"]["total_size"] == total
    config = json.load(open(os.path.join(out, "config.json")))
    layers = config["num_hidden_layers"]
    assert len(index["weight_map"]) == 3 + 9 * layers
    print(f"ok: {len(index['weight_map'])} tensors in {len(shards)} shards, {total} bytes verified")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
