"""shardload.load(verify=, dtype=): a manifest written with hashlib (the
oracle) passes, a flipped byte raises shardload.Error naming the file and
returns nothing; dtype= converts floating-point tensors as numpy does
(float16 casts; BF16 and F8 decoded from their bits) and leaves the others'
bytes alone, whole and for a rank's slices."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload


def write_manifest(directory, path, as_json=False):
    digests = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            with open(os.path.join(directory, name), "rb") as f:
                digests[name] = hashlib.sha256(f.read()).hexdigest()
    with open(path, "w") as f:
        if as_json:
            json.dump(digests, f)
        else:
            f.writelines(f"{d}  {n}\n" for n, d in digests.items())
    return str(path)


@pytest.mark.parametrize("as_json", [False, True])
def test_verify_passes_and_reports(dtypes_checkpoint, tmp_path, as_json):
    manifest = write_manifest(dtypes_checkpoint, tmp_path / "m", as_json)
    loaded = shardload.load(dtypes_checkpoint, verify=manifest)
    assert loaded.stats["verified"].startswith("2 files verified from the loaded bytes")


def test_verify_mismatch_raises_naming_the_file(dtypes_checkpoint, tmp_path):
    directory = tmp_path / "copy"
    shutil.copytree(dtypes_checkpoint, directory)
    manifest = write_manifest(directory, tmp_path / "m")
    victim = directory / "model-00002-of-00002.safetensors"
    data = bytearray(victim.read_bytes())
    data[len(data) - 3] ^= 0x40  # inside the last tensor's bytes
    victim.write_bytes(bytes(data))
    with pytest.raises(shardload.Error) as info:
        shardload.load(str(directory), verify=manifest)
    assert info.value.code == "checksum_mismatch"
    assert info.value.path == str(victim)


def test_bad_arguments():
    with pytest.raises(ValueError):
        shardload.load("x", dtype="F8_E4M3")
    with pytest.raises(TypeError):
        shardload.load("x", verify=3)


def f8_values(bits, exp_bits, mant_bits, bias, ieee):
    b = bits.astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp, mant = (b >> mant_bits) & ((1 << exp_bits) - 1), b & ((1 << mant_bits) - 1)
    v = np.where(exp == 0, sign * np.ldexp(mant / (1 << mant_bits), 1 - bias),
                 sign * np.ldexp(1 + mant / (1 << mant_bits), exp - bias))
    top = (1 << exp_bits) - 1
    if ieee:
        v = np.where((exp == top) & (mant == 0), sign * np.inf, v)
        v = np.where((exp == top) & (mant != 0), np.nan, v)
    else:
        v = np.where((exp == top) & (mant == (1 << mant_bits) - 1), np.nan, v)
    return v


def as_f32(dtype, raw):
    """float32 values of raw bytes of a floating dtype (numpy as the oracle)."""
    bits = np.frombuffer(raw, np.uint8)
    if dtype == "F32":
        return bits.view(np.float32)
    if dtype == "F16":
        return bits.view(np.float16).astype(np.float32)
    if dtype == "BF16":
        return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E4M3":
        return f8_values(bits, 4, 3, 7, False).astype(np.float32)
    return f8_values(bits, 5, 2, 15, True).astype(np.float32)


CONVERTED = ("F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


@pytest.mark.parametrize("target", ["F32", "F16"])
def test_dtype_converts_floats_only(dtypes_checkpoint, target):
    loaded = shardload.load(dtypes_checkpoint, dtype=target)
    expected = oracle.read_dir(dtypes_checkpoint)
    np_target = {"F32": np.float32, "F16": np.float16}[target]
    for name, entry in expected.items():
        if entry["dtype"] in CONVERTED:
            assert loaded.dtypes[name] == target, name
            want = as_f32(entry["dtype"], entry["raw"]).astype(np_target)
            got = np.asarray(loaded[name]).reshape(-1)
            assert got.dtype == np_target
            assert np.array_equal(got, want, equal_nan=True), name
        else:
            assert loaded.dtypes[name] == entry["dtype"], name
            assert np.asarray(loaded[name]).tobytes() == entry["raw"], name


def test_dtype_for_rank_slices(llama):
    directory, _ = llama
    for rank in range(2):
        plain = shardload.load(directory, rank=rank, world=2, plan="hf")
        wide = shardload.load(directory, rank=rank, world=2, plan="hf", dtype="F32")
        for name, array in plain.items():
            assert wide[name].shape == array.shape, name
            want = (np.asarray(array).astype(np.uint32) << 16).view(np.float32)
            assert np.array_equal(wide[name], want, equal_nan=True), name
