"""device="cuda:N" without a GPU: loads through the fake CUDA runtime
(tests/device/fake_cudart.cpp, $FAKE_CUDART, loaded by the library's own
dlopen via $SHARDLOAD_CUDART). Checks the DLPack capsules up to what torch
would import: device type kDLCUDA, the shapes, and the device bytes (copied
back with the fake's cudaMemcpy) against the independent reader; gds=True
through the fake libcufile ($FAKE_CUFILE); then the error paths. torch itself cannot import CUDA capsules here (no CUDA)."""
import ctypes
import gc
import os

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload
from shardload import _shardload

FAKE = os.environ.get("FAKE_CUDART", "")
FAKE_CUFILE = os.environ.get("FAKE_CUFILE", "")
KDLCUDA = 2


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


def dl_tensor(capsule):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return DLTensor.from_address(get(capsule, b"dltensor"))


@pytest.fixture
def fake(monkeypatch):
    if not FAKE or not os.path.exists(FAKE):
        pytest.skip("FAKE_CUDART (the fake CUDA runtime) not given")
    monkeypatch.setenv("SHARDLOAD_CUDART", FAKE)
    for var in ("FAKE_CUDA_DEVICES", "FAKE_CUDA_FAIL_MALLOC", "FAKE_CUDA_FAIL_COPY",
                "FAKE_CUDA_LATE_ERROR", "FAKE_CUDA_FAIL_REGISTER"):
        monkeypatch.delenv(var, raising=False)
    lib = ctypes.CDLL(FAKE)
    lib.fake_cuda_count.restype = ctypes.c_long
    lib.fake_cuda_count.argtypes = [ctypes.c_char_p]
    lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def load_memory(path, device="cuda:0", plan="", **kw):
    args = dict(globs=[], threads=2, mode="auto", rank=0, world=1, progress=None,
                plan_kind=plan and "hf", plan_path="", plan_text="")
    args.update(kw)
    return _shardload.load(shardload.open(path)._handle, device=device, **args)


def live(lib):
    return sum(lib.fake_cuda_count(k) for k in
               (b"live_allocations", b"live_registrations", b"live_streams", b"live_events"))


def test_capsules_are_cuda_and_hold_the_bytes(fake, dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    memory = load_memory(dtypes_checkpoint)
    stats = memory.stats()
    assert stats["device"] == "cuda:0"
    assert "pinned staging" in stats["transfer"]
    assert "cudaMalloc" in stats["memory"]
    for name, entry in expected.items():
        capsule = memory.dlpack(name)
        t = dl_tensor(capsule)
        assert (t.device_type, t.device_id) == (KDLCUDA, 0), name
        want_shape = oracle.view_shape(entry["dtype"], entry["shape"], len(entry["raw"]))
        assert tuple(t.shape[i] for i in range(t.ndim)) == tuple(want_shape), name
        raw = entry["raw"]
        if raw:
            buf = ctypes.create_string_buffer(len(raw))
            assert fake.cudaMemcpy(buf, t.data, len(raw), 2) == 0
            assert buf.raw == raw, f"{name}: device bytes differ"
    with pytest.raises(ValueError, match="cuda:0"):
        memory.arrays()
    del memory, capsule, t
    gc.collect()
    assert live(fake) == 0


def test_rank_slice_on_device(fake, llama):
    directory, _ = llama
    host = load_memory(directory, device="cpu", rank=1, world=2, plan="hf")
    dev = load_memory(directory, rank=1, world=2, plan="hf")
    arrays = host.arrays()
    assert len(dev) == len(arrays)
    for name, array in arrays.items():
        capsule = dev.dlpack(name)  # t lives in the capsule: keep it
        t = dl_tensor(capsule)
        n = array.nbytes
        buf = ctypes.create_string_buffer(max(n, 1))
        if n:
            assert fake.cudaMemcpy(buf, t.data, n, 2) == 0
        assert buf.raw[:n] == np.ascontiguousarray(array).tobytes(), name
    del dev, t, capsule
    gc.collect()
    assert live(fake) == 0


def test_gds_rank_slice_on_device(fake, llama, monkeypatch):
    if not FAKE_CUFILE or not os.path.exists(FAKE_CUFILE):
        pytest.skip("FAKE_CUFILE (the fake libcufile) not given")
    monkeypatch.setenv("SHARDLOAD_CUFILE", FAKE_CUFILE)
    cufile = ctypes.CDLL(FAKE_CUFILE)
    cufile.fake_cufile_count.restype = ctypes.c_long
    cufile.fake_cufile_count.argtypes = [ctypes.c_char_p]
    cufile.fake_cufile_reset()
    directory, _ = llama
    with pytest.raises(TypeError, match="gds"):
        shardload.load(directory, device="cuda:0", framework="torch", gds=1)
    host = load_memory(directory, device="cpu", rank=1, world=2, plan="hf")
    dev = load_memory(directory, rank=1, world=2, plan="hf", mode="direct", gds=True)
    assert "cuFileRead of" in dev.stats()["transfer"]
    assert cufile.fake_cufile_count(b"reads") > 0
    arrays = host.arrays()
    for name, array in arrays.items():
        capsule = dev.dlpack(name)
        t = dl_tensor(capsule)
        n = array.nbytes
        buf = ctypes.create_string_buffer(max(n, 1))
        if n:
            assert fake.cudaMemcpy(buf, t.data, n, 2) == 0
        assert buf.raw[:n] == np.ascontiguousarray(array).tobytes(), name
    del dev, t, capsule
    gc.collect()
    assert live(fake) == 0
    assert sum(cufile.fake_cufile_count(k) for k in
               (b"live_handles", b"live_buffers", b"driver_open", b"misuse")) == 0


def test_errors(fake, dtypes_checkpoint, monkeypatch):
    with pytest.raises(ValueError, match="framework"):
        shardload.load(dtypes_checkpoint, device="cuda:0")
    with pytest.raises(ValueError, match="cuda:N"):
        shardload.load(dtypes_checkpoint, device="gpu", framework="torch")
    with pytest.raises(TypeError):
        shardload.load(dtypes_checkpoint, device=0, framework="torch")
    monkeypatch.setenv("FAKE_CUDA_DEVICES", "0")
    with pytest.raises(shardload.Error) as e:
        load_memory(dtypes_checkpoint)
    assert e.value.code == "unsupported" and "no CUDA device" in str(e.value)
    monkeypatch.setenv("FAKE_CUDA_DEVICES", "1")
    monkeypatch.setenv("FAKE_CUDA_LATE_ERROR", "1")
    with pytest.raises(shardload.Error) as e:
        load_memory(dtypes_checkpoint)
    assert "illegal memory access" in str(e.value)
    monkeypatch.delenv("FAKE_CUDA_LATE_ERROR")
    monkeypatch.setenv("SHARDLOAD_CUDART", "/nonexistent/libcudart.so")
    with pytest.raises(shardload.Error) as e:
        load_memory(dtypes_checkpoint)
    assert e.value.code == "unsupported" and "libcudart" in str(e.value)
    gc.collect()
    assert live(fake) == 0


def test_torch_gets_cuda_capsules(fake, dtypes_checkpoint):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a real CUDA device: the fake's pointers are not its memory")
    # torch without CUDA refuses a kDLCUDA capsule: the error reaches the caller.
    with pytest.raises(Exception):
        shardload.load(dtypes_checkpoint, device="cuda:0", framework="torch")
    gc.collect()
    assert live(fake) == 0


class FakeDeviceBuffer:
    """nbytes of fake device memory, seen through __cuda_array_interface__."""

    def __init__(self, lib, nbytes):
        self.lib, self.nbytes = lib, nbytes
        self.ptr = ctypes.c_void_p()
        assert lib.cudaMalloc(ctypes.byref(self.ptr), max(nbytes, 1)) == 0
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1",
                                         "data": (self.ptr.value, False), "version": 3}

    def bytes(self):
        buf = ctypes.create_string_buffer(max(self.nbytes, 1))
        if self.nbytes:
            assert self.lib.cudaMemcpy(buf, self.ptr, self.nbytes, 2) == 0
        return buf.raw[:self.nbytes]

    def free(self):
        assert self.lib.cudaFree(self.ptr) == 0


def test_load_into_host_arrays(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    ck = shardload.open(dtypes_checkpoint)
    buffers = {name: np.full(len(e["raw"]), 0xEE, np.uint8) for name, e in expected.items()}
    stats = ck.load_into(buffers)
    assert stats["device"] == "cpu" and stats["tensors"] == len(expected)
    for name, e in expected.items():
        assert buffers[name].tobytes() == e["raw"], name
    readonly = np.zeros(len(expected["t.f32"]["raw"]), np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ck.load_into({"t.f32": readonly})
    with pytest.raises(shardload.Error) as e:
        ck.load_into({"t.f32": np.zeros(3, np.uint8)})
    assert e.value.code == "invalid_argument" and e.value.tensor == "t.f32"
    with pytest.raises(TypeError):
        ck.load_into({"t.f32": b"bytes"})


def test_load_into_device_buffers(fake, dtypes_checkpoint, llama):
    fake.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    fake.cudaFree.argtypes = [ctypes.c_void_p]
    expected = oracle.read_dir(dtypes_checkpoint)
    buffers = {name: FakeDeviceBuffer(fake, len(e["raw"])) for name, e in expected.items()}
    stats = shardload.open(dtypes_checkpoint).load_into(buffers)
    assert stats["device"] == "cuda:0" and "pinned staging" in stats["transfer"]
    for name, e in expected.items():
        assert buffers[name].bytes() == e["raw"], name
    with pytest.raises(ValueError, match="several devices"):
        shardload.open(dtypes_checkpoint).load_into(
            {"t.f32": buffers["t.f32"], "t.u8": np.zeros(len(expected["t.u8"]["raw"]), np.uint8)})
    for b in buffers.values():
        b.free()
    # One rank's slices into device buffers of the local sizes.
    directory, _ = llama
    ck = shardload.open(directory)
    planned = ck.plan(rank=1, world=2, plan="hf")
    host = load_memory(directory, device="cpu", rank=1, world=2, plan="hf").arrays()
    buffers = {name: FakeDeviceBuffer(fake, t.nbytes) for name, t in planned.tensors.items()}
    ck.load_into(buffers, rank=1, world=2, plan="hf")
    for name, b in buffers.items():
        assert b.bytes() == np.ascontiguousarray(host[name]).tobytes(), name
        b.free()
    gc.collect()
    assert live(fake) == 0
