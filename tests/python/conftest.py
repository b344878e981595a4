"""Fixtures of the Python binding's tests: checkpoints written by the
independent writer (safetensors_oracle.py) and by `shardload generate`.
Run by CTest (tests/python/CMakeLists.txt) with PYTHONPATH=<build>/python and
SHARDLOAD_CLI=<the built shardload command>."""
import json
import os
import subprocess

import numpy as np
import pytest

import safetensors_oracle as oracle

# One tensor of each dtype (2-D shapes whose sub-byte rows fill whole bytes),
# plus the edge cases: sub-byte rows that do not (flat view), a scalar and
# an empty tensor.
SHAPES = {dtype: (3, 8) for dtype in oracle.BITS}
EDGE_CASES = {"odd.f4": ("F4", (2, 3)), "odd.f6": ("F6_E2M3", (4, 1)),
              "scalar.f32": ("F32", ()), "empty.f32": ("F32", (0, 4))}


def _random_tensors(seed):
    rng = np.random.default_rng(seed)
    tensors = {}
    specs = {f"t.{dtype.lower()}": (dtype, shape) for dtype, shape in SHAPES.items()}
    specs.update(EDGE_CASES)
    for name, (dtype, shape) in specs.items():
        size = oracle.nbytes(dtype, shape)
        raw = rng.integers(0, 2 if dtype == "BOOL" else 256, size, dtype=np.uint8).tobytes()
        tensors[name] = (dtype, shape, raw)
    return tensors


@pytest.fixture(scope="session")
def dtypes_checkpoint(tmp_path_factory):
    """A two-shard checkpoint with an index: every dtype, random bytes."""
    directory = tmp_path_factory.mktemp("dtypes")
    tensors = _random_tensors(seed=20240601)
    names = list(tensors)
    half = len(names) // 2
    oracle.write_index(str(directory), {
        "model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:half]},
        "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[half:]},
    })
    return str(directory)


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("SHARDLOAD_CLI", "")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("SHARDLOAD_CLI (the built shardload command) not given")
    return path


@pytest.fixture(scope="session")
def llama(cli, tmp_path_factory):
    """A small Llama-like BF16 checkpoint from `shardload generate` with a
    config.json holding a base_model_tp_plan: (directory, config)."""
    directory = str(tmp_path_factory.mktemp("llama") / "ckpt")
    subprocess.run([cli, "generate", directory, "--size", "6MB", "--max-shard-size", "2MB",
                    "--seed", "11"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    return directory, config
