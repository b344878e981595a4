"""Errors: checkpoint and I/O problems raise shardload.Error with code, path
and tensor; bad Python arguments raise TypeError / ValueError before any
file is read."""
import errno
import json
import pickle
import struct
import sys

import pytest

import safetensors_oracle as oracle
import shardload


def test_error_is_an_exception_with_attributes():
    assert issubclass(shardload.Error, Exception)
    error = shardload.Error("p: boom (error: io_error)", code="io_error", code_number=302,
                            path="p", tensor="t", detail="boom", errno=5)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is shardload.Error and str(again) == str(error)
    assert (again.code, again.code_number, again.path, again.tensor, again.detail,
            again.errno) == ("io_error", 302, "p", "t", "boom", 5)


def test_missing_path(tmp_path):
    path = str(tmp_path / "absent")
    for call in (shardload.load, shardload.open):
        with pytest.raises(shardload.Error) as info:
            call(path)
        error = info.value
        assert error.code == "io_error" and error.code_number == 302
        assert error.path == path and error.errno == errno.ENOENT
        assert path in str(error) and "io_error" in str(error)


def test_header_longer_than_the_file(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b'{"a": {}}')
    with pytest.raises(shardload.Error) as info:
        shardload.load(path)
    assert info.value.code == "invalid_header_length" and info.value.path == str(path)


def test_header_that_is_not_json(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 8) + b"{not json")
    with pytest.raises(shardload.Error) as info:
        shardload.open(path)
    assert info.value.code == "json_syntax" and info.value.path == str(path)


def test_size_mismatch_names_the_tensor(tmp_path):
    path = tmp_path / "short.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(shardload.Error) as info:
        shardload.load(path)
    assert info.value.code == "tensor_invalid_info" and info.value.tensor == "w"


def test_shard_missing(tmp_path):
    oracle.write_index(str(tmp_path), {"model-1.safetensors": {"a": ("U8", (1,), b"\1")}},
                       extra={"b": "model-2.safetensors"})
    with pytest.raises(shardload.Error) as info:
        shardload.load(tmp_path)
    assert info.value.code == "shard_missing" and info.value.code_number == 204
    assert info.value.path.endswith("model-2.safetensors")


def test_truncated_shard_fails_the_load(tmp_path):
    """The header is fine when opened; the file shrinks before the load."""
    path = tmp_path / "model.safetensors"
    oracle.write_file(str(path), {"w": ("U8", (4096,), bytes(4096))})
    ckpt = shardload.open(path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(shardload.Error) as info:
        ckpt.load()
    assert info.value.code == "truncated" and info.value.path == str(path)
    assert info.value.tensor == "w"


@pytest.mark.parametrize("kwargs, exception", [
    ({"rank": "first", "world": 2, "plan": "hf"}, ValueError),
    ({"rank": True, "world": 2, "plan": "hf"}, TypeError),
    ({"rank": 1.0, "world": 2, "plan": "hf"}, TypeError),
    ({"rank": 2, "world": 2, "plan": "hf"}, ValueError),
    ({"rank": -1, "world": 2, "plan": "hf"}, ValueError),
    ({"rank": 0, "world": 0, "plan": "hf"}, ValueError),
    ({"world": 2, "plan": "hf"}, ValueError),             # no rank
    ({"rank": 0, "plan": "hf"}, ValueError),              # no world
    ({"rank": 1, "world": 2}, ValueError),                # no plan
    ({"rank": 0, "world": 1, "plan": ""}, ValueError),
    ({"rank": 0, "world": 1, "plan": 3}, TypeError),
    ({"rank": 0, "world": 1, "plan": {"x": object()}}, TypeError),  # not JSON
    ({"select": 5}, TypeError),
    ({"select": b"a"}, TypeError),
    ({"select": ["a", 5]}, TypeError),
    ({"select": []}, ValueError),
    ({"select": [""]}, ValueError),
    ({"threads": 0}, ValueError),
    ({"threads": 2000}, ValueError),
    ({"threads": "2"}, TypeError),
    ({"direct": "yes"}, TypeError),
    ({"mode": 1}, TypeError),
    ({"mode": "cold"}, ValueError),
    ({"direct": True, "mode": "buffered"}, ValueError),
    ({"framework": "jax"}, ValueError),
    ({"progress": 3}, TypeError),
])
def test_bad_arguments(dtypes_checkpoint, kwargs, exception):
    with pytest.raises(exception):
        shardload.load(dtypes_checkpoint, **kwargs)


def test_bad_path_types_and_plan_arguments(dtypes_checkpoint):
    with pytest.raises(TypeError):
        shardload.load(None)
    with pytest.raises(TypeError):
        shardload.open(3)
    with pytest.raises(ValueError):
        shardload.open("")
    ckpt = shardload.open(dtypes_checkpoint)
    with pytest.raises(ValueError):
        ckpt.plan(world=2)            # no plan
    with pytest.raises(ValueError):
        ckpt.plan(plan="hf")          # no world
    with pytest.raises(TypeError):
        ckpt.load(threads=1.5)


def test_unknown_tensor_and_bad_glob(dtypes_checkpoint):
    with pytest.raises(shardload.Error) as info:
        shardload.load(dtypes_checkpoint, select=["t.f32", "absent"])
    assert info.value.code == "tensor_not_found"
    with pytest.raises(shardload.Error) as info:
        shardload.load(dtypes_checkpoint, select="re:(")
    assert info.value.code == "invalid_argument"


def test_torch_missing_raises_import_error_before_loading(dtypes_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    monkeypatch.delitem(sys.modules, "shardload._torch", raising=False)
    with pytest.raises(ImportError):
        shardload.load(dtypes_checkpoint, framework="torch")
