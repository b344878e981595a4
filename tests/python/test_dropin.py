"""The safetensors drop-in surface with numpy (issue 26): serialize /
save / save_file against an independent layout oracle and the real
reference-written files, loads from bytes validated exactly as files,
TensorSpec, the exception types, backend=, get_tensors / offset_keys, and
get_slice's indexing rules."""
import json
import os
import struct

import numpy as np
import pytest

import shardload
import shardload.numpy as snp

# ../shared beside the checkout, or $SHARDLOAD_SHARED_DIR (as the C++ tests).
REAL_FILES = os.path.join(os.environ.get("SHARDLOAD_SHARED_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared"), "research", "real-files")
# The reference writer's order: dtype descending in this list, then name.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
               "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
               "C64", "F64", "I64", "U64"]
NP_CODES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
            "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32",
            "complex64": "C64", "float64": "F64", "int64": "I64", "uint64": "U64"}


def oracle_file(arrays, metadata=None):
    """The bytes of a safetensors file, built independently of shardload."""
    entries = sorted(arrays.items(), key=lambda kv: (-DTYPE_ORDER.index(NP_CODES[kv[1].dtype.name]),
                                                     kv[0]))
    header, data, at = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, array in entries:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": NP_CODES[array.dtype.name], "shape": list(array.shape),
                        "data_offsets": [at, at + len(raw)]}
        data += raw
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def sample_arrays():
    rng = np.random.default_rng(26)
    return {"w": rng.standard_normal((3, 5)).astype(np.float32),
            "b": rng.integers(0, 255, (7,), dtype=np.uint8),
            "h": rng.standard_normal((2, 3)).astype(np.float16),
            "a": rng.integers(-9, 9, (4,), dtype=np.int64),
            "mask": np.array([True, False, True]),
            "s": np.array(2.5),
            "z": np.zeros((0, 4), dtype=np.float32),
            "c": np.array([1 + 2j, -3j], dtype=np.complex64)}


def test_save_matches_layout_oracle():
    arrays = sample_arrays()
    assert snp.save(arrays) == oracle_file(arrays)
    assert snp.save(arrays, metadata={"format": "np"}) == oracle_file(arrays, {"format": "np"})
    reordered = dict(reversed(list(arrays.items())))
    assert snp.save(reordered) == snp.save(arrays)


def test_save_converts_big_endian_and_strided():
    data = np.arange(12, dtype=">i4").reshape(3, 4)
    assert snp.save({"t": data}) == oracle_file({"t": data.astype("<i4")})
    strided = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    assert snp.save({"t": strided}) == oracle_file({"t": np.ascontiguousarray(strided)})


def test_save_file_atomic_and_identical(tmp_path):
    arrays = sample_arrays()
    path = tmp_path / "out.safetensors"
    snp.save_file(arrays, path, metadata={"k": "v"})
    assert path.read_bytes() == snp.save(arrays, metadata={"k": "v"})
    snp.save_file({"t": np.ones(3, np.float32)}, str(path))  # replaces it
    assert path.read_bytes() == oracle_file({"t": np.ones(3, np.float32)})
    with pytest.raises(shardload.SafetensorError):  # no such dtype: refused, file kept
        snp.save_file({"t": np.ones(2, np.complex128)}, path)
    with pytest.raises(shardload.SafetensorError):  # metadata key reserved twice over
        snp.save_file({"__metadata__": np.ones(2, np.float32)}, path)
    assert path.read_bytes() == oracle_file({"t": np.ones(3, np.float32)})
    assert sorted(os.listdir(tmp_path)) == ["out.safetensors"]  # no temporary left


@pytest.mark.parametrize("name", ["candle_mel_filters.safetensors",
                                  "candle_csm_voices.safetensors",
                                  "runai_test_empty.safetensors"])
def test_real_files_reserialize_byte_identical(name):
    path = os.path.join(REAL_FILES, name)
    if not os.path.exists(path):
        pytest.skip("../shared/research/real-files is absent")
    original = open(path, "rb").read()
    codes = {code: name for name, code in shardload._serialize.DTYPE_CODES.items()}
    keep = []
    specs = {}
    for tensor, info in shardload.deserialize(original):
        buffer = np.frombuffer(info["data"], dtype=np.uint8)
        keep.append(buffer)
        specs[tensor] = shardload.TensorSpec(dtype=codes[info["dtype"]], shape=info["shape"],
                                             data_ptr=buffer.ctypes.data, data_len=buffer.nbytes)
    assert shardload.serialize(specs) == original
    loaded = snp.load(original)
    assert snp.save(loaded) == original


def test_load_bytes_roundtrip():
    arrays = sample_arrays()
    loaded = snp.load(snp.save(arrays))
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert np.array_equal(loaded[name], array), name
        assert loaded[name].flags.writeable and loaded[name].flags.c_contiguous
    assert np.array_equal(snp.load(bytearray(snp.save(arrays)))["w"], arrays["w"])


def corrupt_files():
    good = oracle_file({"t": np.arange(4, dtype=np.float32)})
    n = struct.unpack("<Q", good[:8])[0]
    header = good[8:8 + n]
    return {
        "short": good[:5],
        "length past end": struct.pack("<Q", 10**6) + good[8:],
        "truncated data": good[:-1],
        "trailing bytes": good + b"\0",
        "bad json": good[:8] + b"{" + header[1:].replace(b"}", b"]", 1) + good[8 + n:],
        "bad utf8": good[:8] + header[:2] + b"\xff" + header[3:] + good[8 + n:],
    }


@pytest.mark.parametrize("case", sorted(corrupt_files()))
def test_bytes_validated_as_files(tmp_path, case):
    data = corrupt_files()[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(shardload.SafetensorError) as from_file:
        snp.load_file(path)
    for load in (snp.load, shardload.deserialize):
        with pytest.raises(shardload.SafetensorError) as from_bytes:
            load(data)
        assert from_bytes.value.code == from_file.value.code, case
        assert from_bytes.value.detail == from_file.value.detail, case
        assert from_bytes.value.path == "<bytes>"


def test_deserialize():
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3, dtype=np.int8)}
    out = shardload.deserialize(snp.save(arrays))
    assert [name for name, _ in out] == ["w", "b"]  # file order: F32 before I8
    info = dict(out)["w"]
    assert info["shape"] == [2, 3] and info["dtype"] == "F32"
    assert isinstance(info["data"], bytearray) and info["data"] == arrays["w"].tobytes()


def test_tensor_spec_and_serialize_arguments():
    data = np.arange(4, dtype=np.uint8)
    spec = shardload.TensorSpec(dtype="float4_e2m1fn_x2", shape=[2, 2], data_ptr=data.ctypes.data,
                                data_len=4)
    assert spec.dtype == "F4" and spec.shape == [2, 4] and spec.data_len == 4
    with pytest.raises(AttributeError):
        spec.data_len = 3
    with pytest.raises(shardload.SafetensorError, match="Unknown dtype"):
        shardload.TensorSpec(dtype="float128", shape=[1], data_ptr=0, data_len=0)
    with pytest.raises(TypeError):
        shardload.TensorSpec("uint8", [4], data.ctypes.data, 4)
    with pytest.raises(TypeError):
        shardload.serialize({"t": {"dtype": "uint8", "shape": [4], "data_ptr": 0, "data_len": 0}})
    short = shardload.TensorSpec(dtype="uint8", shape=[5], data_ptr=data.ctypes.data, data_len=4)
    with pytest.raises(shardload.SafetensorError, match="t"):
        shardload.serialize({"t": short})
    packed = shardload.serialize({"p": spec})
    assert b'"dtype":"F4","shape":[2,4]' in packed and packed.endswith(data.tobytes())


@pytest.fixture()
def saved(tmp_path):
    arrays = {"a": np.arange(50, dtype=np.float64).reshape(10, 5),
              "b": np.arange(6, dtype=np.int16), "c": np.ones((2, 2), np.float32)}
    path = str(tmp_path / "m.safetensors")
    snp.save_file(arrays, path, metadata={"format": "np"})
    return path, arrays


def test_errors_are_builtin_types(tmp_path, saved):
    path, _ = saved
    missing = str(tmp_path / "absent.safetensors")
    for call in (lambda: shardload.safe_open(missing, framework="np"),
                 lambda: snp.load_file(missing)):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert isinstance(info.value, shardload.Error) and info.value.errno == 2
    with pytest.raises(FileNotFoundError, match=f"^No such file or directory: {missing}$"):
        shardload.safe_open(missing, framework="np")
    with pytest.raises(FileNotFoundError):  # ENOTDIR: a file taken for a directory
        shardload.safe_open(str(tmp_path / "m.safetensors" / "x"), framework="np")
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(OSError) as info:  # ELOOP: another system error
        shardload.safe_open(str(tmp_path / "loop"), framework="np")
    assert isinstance(info.value, shardload.SafetensorError)
    assert not isinstance(info.value, FileNotFoundError) and info.value.code == "io_error"
    with shardload.safe_open(path, framework="np") as f:
        with pytest.raises(KeyError) as info:
            f.get_tensor("absent")
        assert isinstance(info.value, shardload.SafetensorError)
        assert str(info.value) == "File does not contain tensor absent"
        assert (info.value.code, info.value.code_number) == ("tensor_not_found", 301)
    for use in (f.keys, f.metadata, lambda: f.get_tensor("a"), f.get_tensors):
        with pytest.raises(shardload.SafetensorError, match="File is closed"):
            use()
        with pytest.raises(ValueError):
            use()


def test_backends_and_get_tensors(saved):
    path, arrays = saved
    results = []
    for backend in ("mmap", "pread"):
        with shardload.safe_open(path, framework="np", backend=backend) as f:
            assert f.metadata() == {"format": "np"}
            assert f.keys() == ["a", "b", "c"]
            assert f.offset_keys() == ["a", "c", "b"]  # F64, F32, I16
            tensors = f.get_tensors()
            assert list(tensors) == f.offset_keys()
            results.append(tensors)
            assert np.array_equal(f.get_slice("a")[2:4], arrays["a"][2:4])
        results.append(snp.load_file(path, backend=backend))
    for tensors in results:
        for name, array in arrays.items():
            assert np.array_equal(tensors[name], array) and tensors[name].dtype == array.dtype
    for bad in ("mmap2", "io_uring"):
        with pytest.raises(shardload.SafetensorError, match=f'backend "{bad}" is invalid'):
            shardload.safe_open(path, framework="np", backend=bad)
        with pytest.raises(shardload.SafetensorError):
            snp.load_file(path, backend=bad)


def test_slicing_rules(saved):
    path, arrays = saved
    a = arrays["a"]
    with shardload.safe_open(path, framework="np") as f:
        s = f.get_slice("a")
        for index in [(), slice(None), slice(None, 2), (slice(None), slice(None, 2)),
                      (0, slice(None, 2)), (slice(2, None), 0), (slice(2, None), -1),
                      (slice(2, None), -5), (-10,), (slice(-3, None), slice(1, -1)),
                      (slice(1, 9, 3), slice(None, None, 2)), (slice(4, 2),)]:
            got = s[index]
            assert got.shape == a[index].shape and np.array_equal(got, a[index]), index
        assert s[[]].shape == (0, 5)
        cases = [
            ((slice(2, None), -6), "Invalid index -6 for dimension 1 of size 5"),
            ((slice(-11, None),), "Invalid index -11 for dimension 0 of size 10"),
            ((slice(2, None), 20), "Error during slicing [2:, 20] with shape [10, 5]: index 20 "
                                   "out of bounds for tensor dimension #1 of size 5"),
            (slice(None, 20), "Error during slicing [:20] with shape [10, 5]: index 19 out of "
                              "bounds for tensor dimension #0 of size 10"),
            ((slice(None), slice(None, 20)), "Error during slicing [:, :20] with shape [10, 5]: "
                                             "index 19 out of bounds for tensor dimension #1 of "
                                             "size 5"),
            ((20, 20), "Error during slicing [20, 20] with shape [10, 5]: index 20 out of "
                       "bounds for tensor dimension #1 of size 5"),
            ((slice(10, None),), "Error during slicing [10:] with shape [10, 5]: index 10 out "
                                 "of bounds for tensor dimension #0 of size 10"),
        ]
        for index, message in cases:
            with pytest.raises(shardload.SafetensorError) as info:
                s[index]
            assert str(info.value) == message and isinstance(info.value, IndexError)
        with pytest.raises(shardload.SafetensorError, match="^Non empty lists are not implemented$"):
            s[[0, 1]]
        with pytest.raises(TypeError):
            s[[0]]
        with pytest.raises(shardload.SafetensorError, match="more slicing indexes"):
            s[0, 0, 0]
