#!/usr/bin/python3
"""Independent safetensors oracle written with Python's json and numpy only.

  numpy_oracle.py dump FILE    print the header and every tensor of FILE
  numpy_oracle.py check DIR    check the checkpoint write_fixture wrote in DIR
                               against DIR/manifest.json: every shard's layout
                               (reference order, padding, offsets), every
                               tensor's values recomputed with numpy, the shard
                               split (huggingface_hub's algorithm) and the
                               index text (transformers' json.dumps).

Exit status: 0 ok, 1 mismatch, 2 usage, 77 numpy missing (CTest skip).
Single-threaded.
"""

import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the machine
    print("numpy_oracle: numpy is not available; skipping", file=sys.stderr)
    sys.exit(77)

# Reference enum order (docs/format.md section 2); the writer sorts by it.
DTYPES = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
          "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16",
          "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
        "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
        "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
        "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
        "U64": 64}
# numpy types for the dtypes numpy has; BF16 is read as raw uint16.
NUMPY = {"BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2",
         "F16": "<f2", "BF16": "<u2", "I32": "<i4", "U32": "<u4",
         "F32": "<f4", "C64": "<c8", "F64": "<f8", "I64": "<i8", "U64": "<u8"}
GOLDEN = 0x9E3779B97F4A7C15

FAILURES = []


def fail(message):
    FAILURES.append(message)
    print("MISMATCH: " + message, file=sys.stderr)


def unique_object(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key among {keys}")
    return dict(pairs)  # keeps the file's key order


def read_safetensors(path):
    """Returns (N, header text, header as an ordered dict, data bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} past the end")
    text = blob[8:8 + n].decode("utf-8")
    header = json.loads(text, object_pairs_hook=unique_object)
    return n, text, header, blob[8 + n:]


def tensor_array(info, data):
    """The tensor as a numpy array (raw uint8 bytes for types numpy lacks)."""
    begin, end = info["data_offsets"]
    raw = data[begin:end]
    if info["dtype"] not in NUMPY:
        return np.frombuffer(raw, dtype="u1")
    return np.frombuffer(raw, dtype=NUMPY[info["dtype"]]).reshape(info["shape"])


def dump(path):
    n, _, header, data = read_safetensors(path)
    print(f"{path}: N={n} data={len(data)} bytes")
    for key, info in header.items():
        if key == "__metadata__":
            print(f"  __metadata__ = {info}")
            continue
        print(f"  {key!r} {info['dtype']} {info['shape']} {info['data_offsets']}")
        print("    " + np.array2string(tensor_array(info, data), threshold=16))


# ---------------------------------------------------------------------------
# The fixture's formulas (write_fixture.cpp has the same ones).

def float_values(n, k):
    i = np.arange(n, dtype=np.int64)
    return (((i * 7 + k) % 64).astype(np.float64) - 32.0) * 0.125


def int_values(dtype, n, k):
    i = np.arange(n, dtype=np.uint64)
    if dtype in ("I8", "U8"):
        v = (i * np.uint64(37) + np.uint64(k * 11)) % np.uint64(256)
    elif dtype in ("I16", "U16"):
        v = (i * np.uint64(1237) + np.uint64(k)) % np.uint64(65536)
    elif dtype in ("I32", "U32"):
        v = (i * np.uint64(2654435761) + np.uint64(k)) % np.uint64(1 << 32)
    else:  # I64, U64: wraps modulo 2^64
        v = i * np.uint64(GOLDEN) + np.uint64(k)
    unsigned = {"I8": "u1", "U8": "u1", "I16": "<u2", "U16": "<u2",
                "I32": "<u4", "U32": "<u4", "I64": "<u8", "U64": "<u8"}[dtype]
    return v.astype(unsigned).view(NUMPY[dtype])


def expected_array(dtype, shape, k):
    n = int(np.prod(shape, dtype=np.uint64)) if shape else 1
    if dtype not in NUMPY:
        nbytes = n * BITS[dtype] // 8
        j = np.arange(nbytes, dtype=np.uint64)
        return ((j * np.uint64(29) + np.uint64(k * 3 + 1)) % np.uint64(256)).astype("u1")
    if dtype == "BOOL":
        v = (np.arange(n) + k) % 3 == 0
    elif dtype in ("F16", "F32", "F64"):
        v = float_values(n, k).astype(NUMPY[dtype])
    elif dtype == "BF16":  # exact values: bfloat16 = upper half of float32
        v = (float_values(n, k).astype("<f4").view("<u4") >> 16).astype("<u2")
    elif dtype == "C64":
        v = (float_values(n, k) + 1j * float_values(n + 1000, k)[1000:]).astype("<c8")
    else:
        v = int_values(dtype, n, k)
    return v.reshape(shape)


def tensor_bytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * BITS[dtype] // 8


def hub_split(names, sizes, limit):
    """huggingface_hub split_state_dict_into_shards_factory."""
    shards, current, current_size = [], [], 0
    for name, size in zip(names, sizes):
        if size > limit:
            shards.append([name])
            continue
        if current_size + size > limit:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current:
        shards.append(current)
    return shards


# ---------------------------------------------------------------------------
# Checks.

def check_layout(path, n, text, header, data, metadata):
    """Checks the reference layout; returns {name: info}."""
    if n % 8 != 0:
        fail(f"{path}: N={n} is not a multiple of 8")
    stripped = text.rstrip(" ")
    if len(text) - len(stripped) >= 8:
        fail(f"{path}: more than 7 padding spaces")
    # serde_json's compact output escapes exactly as Python's ensure_ascii=False.
    compact = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    if stripped != compact:
        fail(f"{path}: header is not compact serde_json text:\n{stripped}\n{compact}")
    keys = list(header)
    if keys[:1] != ["__metadata__"] or header["__metadata__"] != metadata:
        fail(f"{path}: __metadata__ is not first or not {metadata}")
    tensors = [(k, v) for k, v in header.items() if k != "__metadata__"]
    order = sorted(tensors, key=lambda t: (-DTYPES.index(t[1]["dtype"]), t[0].encode("utf-8")))
    if [t[0] for t in tensors] != [t[0] for t in order]:
        fail(f"{path}: tensors not in dtype-descending, name-ascending order")
    offset = 0
    for name, info in tensors:
        begin, end = info["data_offsets"]
        if begin != offset or end - begin != tensor_bytes(info["dtype"], info["shape"]):
            fail(f"{path}: {name!r} has offsets {info['data_offsets']}, expected start {offset}")
        offset = end
    if offset != len(data):
        fail(f"{path}: data section is {len(data)} bytes, tensors cover {offset}")
    return dict(tensors)


def check(directory):
    with open(os.path.join(directory, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    prefix, limit = manifest["prefix"], manifest["max_shard_size"]
    specs = manifest["tensors"]
    names = [bytes(t["name_utf8"]).decode("utf-8") for t in specs]
    sizes = [tensor_bytes(t["dtype"], t["shape"]) for t in specs]

    shards = hub_split(names, sizes, limit)
    files = [f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    expected_map = {name: files[i] for i, shard in enumerate(shards) for name in shard}

    index_path = os.path.join(directory, f"{prefix}.safetensors.index.json")
    with open(index_path, "r", encoding="utf-8") as f:
        index_text = f.read()
    index = json.loads(index_text)
    if index_text != json.dumps(index, indent=2, sort_keys=True) + "\n":
        fail("index text differs from json.dumps(index, indent=2, sort_keys=True) + '\\n'")
    if index != {"metadata": {"total_size": sum(sizes)}, "weight_map": expected_map}:
        fail(f"index content differs: {index}")
    expected_files = sorted(files + [os.path.basename(index_path), "manifest.json"])
    if sorted(os.listdir(directory)) != expected_files:
        fail(f"directory holds {sorted(os.listdir(directory))}, expected {expected_files}")

    checked = 0
    for file, shard in zip(files, shards):
        path = os.path.join(directory, file)
        n, text, header, data = read_safetensors(path)
        infos = check_layout(path, n, text, header, data, manifest["shard_metadata"])
        if sorted(infos) != sorted(shard):
            fail(f"{file}: holds {sorted(infos)}, expected {sorted(shard)}")
        for name in shard:
            spec = specs[names.index(name)]
            info = infos.get(name)
            if info is None:
                continue
            if info["dtype"] != spec["dtype"] or info["shape"] != spec["shape"]:
                fail(f"{file}: {name!r} is {info['dtype']} {info['shape']}")
                continue
            got = tensor_array(info, data)
            want = expected_array(spec["dtype"], spec["shape"], spec["k"])
            if got.tobytes() != want.tobytes() or got.dtype != want.dtype:
                fail(f"{file}: {name!r} values differ\n got {got!r}\nwant {want!r}")
            checked += 1
    print(f"numpy_oracle: {checked} tensors in {len(files)} shards checked, "
          f"{len(FAILURES)} mismatches")
    return 1 if FAILURES or checked != len(specs) else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "dump":
        dump(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "check":
        return check(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
