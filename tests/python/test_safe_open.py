"""shardload.safe_open, shardload.torch.load_file and shardload.numpy.load_file
against an independent reader (safetensors_oracle: numpy over the file's
bytes): the same user script, run against both, gives identical tensors;
get_slice(...)[index] equals numpy indexing of the full tensor for random
slices (reading only the selected runs); errors for what is not supported."""
import os
import random

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload
import shardload.numpy


class OracleOpen:
    """The oracle behind safe_open's surface (framework "np")."""

    def __init__(self, directory):
        self._tensors = {}
        self._metadata = None
        for name in sorted(os.listdir(directory)):
            if name.endswith(".safetensors"):
                tensors, metadata, _ = oracle.read_file(os.path.join(directory, name))
                self._tensors.update(tensors)
                self._metadata = metadata

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return sorted(self._tensors)

    def metadata(self):
        return self._metadata

    def get_tensor(self, name):
        return oracle.view(self._tensors[name]).copy()

    def get_slice(self, name):
        return _OracleSlice(self.get_tensor(name), self._tensors[name]["dtype"])


class _OracleSlice:
    def __init__(self, full, dtype):
        self._full, self._dtype = full, dtype

    def get_shape(self):
        return list(self._full.shape)

    def get_dtype(self):
        return self._dtype

    def __getitem__(self, index):
        return self._full[index]


def user_script(opener, path):
    """What a safetensors user writes; returns everything it read."""
    out = {}
    with opener(path) as f:
        out["keys"] = f.keys()
        out["metadata"] = f.metadata()
        for name in f.keys():
            out[name] = f.get_tensor(name)
            if f.get_slice(name).get_dtype() in ("F4", "F6_E2M3", "F6_E3M2"):
                continue
            sl = f.get_slice(name)
            shape = sl.get_shape()
            out[name + "/shape"] = shape
            if shape and shape[0]:
                out[name + "/rows"] = sl[: max(shape[0] // 2, 1)]
                out[name + "/last"] = sl[-1]
            if len(shape) == 2:
                out[name + "/cols"] = sl[:, 1:3]
    return out


def assert_same(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype, key
            assert got[key].shape == value.shape, key
            assert got[key].tobytes() == value.tobytes(), key
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def single_file(tmp_path_factory):
    """One file, every dtype (random bytes), metadata."""
    directory = tmp_path_factory.mktemp("single")
    rng = np.random.default_rng(7)
    tensors = {}
    for dtype in oracle.BITS:
        shape = (4, 6) if oracle.BITS[dtype] >= 8 else (2, 8)
        raw = rng.integers(0, 2 if dtype == "BOOL" else 256, oracle.nbytes(dtype, shape),
                           dtype=np.uint8).tobytes()
        tensors[f"t.{dtype.lower()}"] = (dtype, shape, raw)
    tensors["scalar"] = ("F64", (), rng.bytes(8))
    tensors["empty"] = ("F32", (0, 3), b"")
    oracle.write_file(str(directory / "model.safetensors"), tensors, {"format": "np", "k": "v"})
    return str(directory)


def test_same_script_same_tensors_single_file(single_file):
    path = os.path.join(single_file, "model.safetensors")
    got = user_script(lambda p: shardload.safe_open(p, framework="np"), path)
    expected = user_script(OracleOpen, single_file)
    assert_same(got, expected)


def test_same_script_same_tensors_sharded(dtypes_checkpoint):
    """A sharded checkpoint (index + two shards) opens like one file."""
    got = user_script(lambda p: shardload.safe_open(p, framework="np"), dtypes_checkpoint)
    expected = user_script(OracleOpen, dtypes_checkpoint)
    expected["metadata"] = {"format": "pt"}  # every shard has the same
    assert_same(got, expected)


def test_numpy_load_file_matches_oracle(dtypes_checkpoint):
    loaded = shardload.numpy.load_file(dtypes_checkpoint)
    assert type(loaded) is dict
    expected = oracle.read_dir(dtypes_checkpoint)
    assert sorted(loaded) == sorted(expected)
    for name, entry in expected.items():
        assert loaded[name].tobytes() == entry["raw"], name
        assert loaded[name].dtype == oracle.numpy_view_dtype(entry["dtype"]), name


def _random_index(rng, shape):
    items = []
    for dim in shape:
        kind = rng.choice(["int", "slice", "step", "full", "negative"])
        if kind == "int":
            items.append(rng.randrange(-dim, dim) if dim else slice(None))
        elif kind == "slice":  # safetensors refuses a start >= dim and a stop > dim
            a = rng.randrange(0, dim)
            items.append(slice(a, rng.randrange(a, dim + 1)))
        elif kind == "step":
            items.append(slice(rng.randrange(0, dim), rng.choice([None, dim]),
                               rng.randrange(1, 4)))
        elif kind == "negative":
            items.append(slice(-rng.randrange(1, dim + 1), None))
        else:
            items.append(slice(None))
    cut = rng.randrange(0, len(items) + 1)  # trailing dims left out
    items = items[:cut]
    if items and rng.random() < 0.2:
        items[rng.randrange(len(items))] = Ellipsis
    return items[0] if len(items) == 1 and rng.random() < 0.5 else tuple(items)


@pytest.mark.parametrize("framework", ["np", "pt"])
def test_get_slice_random_slices_match_numpy(tmp_path, framework):
    if framework == "pt":
        torch = pytest.importorskip("torch")
    seed = int(os.environ.get("SHARDLOAD_TEST_SEED", "12345"))
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    tensors, full = {}, {}
    for i, shape in enumerate([(17,), (9, 13), (5, 6, 7), (3, 4, 5, 6), (1, 1), (64, 3)]):
        array = nrng.standard_normal(shape).astype(np.float32)
        tensors[f"w{i}"] = ("F32", shape, array.tobytes())
        full[f"w{i}"] = array
    oracle.write_file(str(tmp_path / "m.safetensors"), tensors)
    with shardload.safe_open(str(tmp_path / "m.safetensors"), framework=framework) as f:
        for _ in range(300):
            name = rng.choice(sorted(full))
            index = _random_index(rng, full[name].shape)
            expected = full[name][index]
            got = f.get_slice(name)[index]
            if framework == "pt":
                assert isinstance(got, torch.Tensor)
                got = got.numpy()
            assert got.shape == expected.shape, (name, index)
            assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), (name, index)


def test_get_slice_reads_only_the_selected_runs(tmp_path, monkeypatch):
    array = np.arange(1000 * 8, dtype=np.float32).reshape(1000, 8)
    oracle.write_file(str(tmp_path / "m.safetensors"), {"w": ("F32", array.shape,
                                                              array.tobytes())})
    calls = []
    real = shardload._shardload.read_ranges

    def spy(handle, **kwargs):
        calls.append(kwargs)
        return real(handle, **kwargs)

    monkeypatch.setattr(shardload._shardload, "read_ranges", spy)
    with shardload.safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        rows = f.get_slice("w")[10:20]
        cols = f.get_slice("w")[100:103, 2:5]
        stepped = f.get_slice("w")[0:10:5, 1]
    assert (rows == array[10:20]).all() and (cols == array[100:103, 2:5]).all()
    assert (stepped == array[0:10:5, 1]).all()
    assert sum(calls[0]["lengths"]) == 10 * 8 * 4  # rows 10..19 only: one run
    assert len(calls[0]["lengths"]) == 1
    assert calls[1]["lengths"] == [3 * 4] * 3       # three runs of three floats
    assert calls[2]["lengths"] == [4] * 2           # rows 0 and 5, one float each


def test_torch_load_file_matches_oracle(dtypes_checkpoint):
    torch = pytest.importorskip("torch")
    import shardload.torch as st
    loaded = st.load_file(dtypes_checkpoint)
    assert type(loaded) is dict
    expected = oracle.read_dir(dtypes_checkpoint)
    assert sorted(loaded) == sorted(expected)
    for name, entry in expected.items():
        tensor = loaded[name]
        assert isinstance(tensor, torch.Tensor)
        raw = tensor.contiguous().view(-1).view(torch.uint8) if tensor.numel() else tensor
        assert bytes(raw.numpy().tobytes()) == entry["raw"], name


def test_torch_get_tensor_dtype_and_bytes(single_file):
    torch = pytest.importorskip("torch")
    path = os.path.join(single_file, "model.safetensors")
    entries, _, _ = oracle.read_file(path)
    loaded = shardload.load(path, framework="torch")  # the dtypes load() promises
    with shardload.safe_open(path, framework="pt", device="cpu") as f:
        for name, entry in entries.items():
            tensor = f.get_tensor(name)
            assert tensor.dtype == loaded[name].dtype, name
            assert tensor.shape == loaded[name].shape, name
            flat = tensor.reshape(-1)
            as_bytes = flat.view(torch.uint8) if flat.numel() else flat
            assert as_bytes.numpy().tobytes() == entry["raw"], name


def test_errors(single_file):
    path = os.path.join(single_file, "model.safetensors")
    with pytest.raises(ValueError, match="framework"):
        shardload.safe_open(path, framework="tf")
    with pytest.raises(ValueError, match="device"):
        shardload.safe_open(path, framework="np", device="cuda")
    with pytest.raises(shardload.Error):
        shardload.safe_open(os.path.join(single_file, "absent.safetensors"), framework="np")
    with shardload.safe_open(path, framework="np") as f:
        with pytest.raises(KeyError, match="nope"):
            f.get_tensor("nope")
        sl = f.get_slice("t.f32")
        with pytest.raises(ValueError, match="positive steps"):
            sl[::-1]
        with pytest.raises(IndexError):
            sl[4]
        with pytest.raises(IndexError, match="more slicing indexes than dimensions"):
            sl[0, 0, 0]
        with pytest.raises(TypeError):
            sl["a"]
        with pytest.raises(ValueError, match="packed"):
            f.get_slice("t.f4")[0]
    with pytest.raises(ValueError, match="closed"):
        f.keys()


def test_get_slice_every_dtype(single_file):
    """Slices of every whole-byte dtype: numpy views against the oracle's,
    torch tensors against load(framework="torch")'s, bit for bit."""
    path = os.path.join(single_file, "model.safetensors")
    entries, _, _ = oracle.read_file(path)
    index = (slice(1, 3), slice(None, None, 2))
    with shardload.safe_open(path, framework="np") as f:
        for name, entry in entries.items():
            if oracle.BITS[entry["dtype"]] < 8 or len(entry["shape"]) != 2:
                continue
            if entry["shape"][0] < 3:  # safetensors refuses a stop past the dimension
                with pytest.raises(IndexError, match="out of bounds"):
                    f.get_slice(name)[index]
                continue
            want = oracle.view(entry)[index]
            got = f.get_slice(name)[index]
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
    torch = pytest.importorskip("torch")
    full = shardload.load(path, framework="torch")
    with shardload.safe_open(path, framework="pt") as f:
        for name, entry in entries.items():
            if oracle.BITS[entry["dtype"]] < 8 or len(entry["shape"]) != 2 or \
                    entry["shape"][0] < 3:
                continue
            want = full[name][index].contiguous()
            got = f.get_slice(name)[index]
            assert got.dtype == want.dtype and got.shape == want.shape, name
            if got.dtype != torch.bool:
                got, want = got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)
            assert torch.equal(got, want), name
