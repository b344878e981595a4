"""framework="torch": zero-copy torch tensors through DLPack with the right
dtypes (bfloat16 included); types this torch lacks come back as integers of
the same width. Skipped when torch is not installed."""
import gc

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload

torch = pytest.importorskip("torch")

# What each safetensors dtype should become, written independently of the
# package's table: the torch dtype by name when this torch has it, else the
# integer of the same width (uint8 for one byte and for packed sub-byte types).
TORCH_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "C64": "complex64", "F64": "float64", "I64": "int64", "U64": "uint64",
    "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
}
SAME_WIDTH = {8: "uint8", 16: "int16", 32: "int32", 64: "int64"}


def expected_dtype(dtype):
    name = TORCH_NAMES.get(dtype)
    if name and hasattr(torch, name):
        return getattr(torch, name)
    return getattr(torch, SAME_WIDTH[max(oracle.BITS[dtype], 8)])


def tensor_bytes(tensor):
    flat = tensor.contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def test_every_dtype(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    loaded = shardload.load(dtypes_checkpoint, framework="torch")
    assert sorted(loaded) == sorted(expected)
    for name, entry in expected.items():
        tensor = loaded[name]
        assert isinstance(tensor, torch.Tensor), name
        assert loaded.dtypes[name] == entry["dtype"]
        assert tensor.dtype == expected_dtype(entry["dtype"]), (name, tensor.dtype)
        want_shape = oracle.view_shape(entry["dtype"], entry["shape"], len(entry["raw"]))
        assert tuple(tensor.shape) == want_shape, name
        assert tensor_bytes(tensor) == entry["raw"], f"{name}: bytes differ"
    assert loaded["t.bf16"].dtype == torch.bfloat16
    assert loaded["t.bool"].dtype == torch.bool


def test_bfloat16_values(llama):
    directory, _ = llama
    expected = oracle.read_dir(directory)
    loaded = shardload.load(directory, framework="torch", select="**.q_proj.weight")
    assert loaded
    for name, tensor in loaded.items():
        bits = np.frombuffer(expected[name]["raw"], "<u2").astype(np.uint32) << 16
        want = bits.view(np.float32).reshape(expected[name]["shape"])
        assert tensor.dtype == torch.bfloat16
        assert np.array_equal(tensor.float().numpy(), want), name


def test_zero_copy_and_keep_alive(dtypes_checkpoint):
    from shardload import _shardload
    expected = oracle.read_dir(dtypes_checkpoint)
    gc.collect()  # tensors of earlier tests
    before = _shardload._live_dlpack_exports()
    loaded = shardload.load(dtypes_checkpoint, framework="torch")
    numpy_view = loaded.memory.arrays()["t.f32"]
    kept = loaded["t.f32"]
    assert kept.data_ptr() == numpy_view.ctypes.data, "torch and numpy share the bytes"
    kept_bf16 = loaded["t.bf16"]
    del loaded, numpy_view
    gc.collect()
    scratch = [torch.full((1 << 16,), 7, dtype=torch.uint8) for _ in range(64)]
    assert tensor_bytes(kept) == expected["t.f32"]["raw"]
    assert tensor_bytes(kept_bf16) == expected["t.bf16"]["raw"]
    assert _shardload._live_dlpack_exports() == before + 2, "each live tensor holds one export"
    del kept, kept_bf16, scratch
    gc.collect()
    assert _shardload._live_dlpack_exports() == before, "exports freed with their tensors"


def test_tensor_parallel_rank(llama):
    directory, config = llama
    full = {n: oracle.view(e) for n, e in oracle.read_dir(directory).items()}
    loaded = shardload.load(directory, rank=1, world=2, plan="hf", framework="torch")
    for name, tensor in loaded.items():
        want = oracle.hf_slice(name, full[name], config, 2, 1)
        assert tensor.dtype == torch.bfloat16 and tuple(tensor.shape) == want.shape
        assert tensor_bytes(tensor) == np.ascontiguousarray(want).tobytes(), name
