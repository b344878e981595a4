"""safetensors' serialize, serialize_file, deserialize and TensorSpec, over
shardload's C++ writer (byte-identical files, written atomically with the
GIL released) and its header parser run on memory (the checks and messages
of a file on disk). Tensor bytes travel as (address, length): nothing is
copied on the way in; the caller keeps the memory alive for the call.
Thread-safe: no shared state."""
import ctypes
import os

import numpy

from . import _shardload
from ._error import Error
from ._safe_open import _empty

# TensorSpec's dtype names -> safetensors dtype codes.
DTYPE_CODES = {
    "bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
    "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64",
    "float16": "F16", "float32": "F32", "float64": "F64", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2": "F8_E5M2", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0", "float4_e2m1fn_x2": "F4", "complex64": "C64",
}


class TensorSpec:
    """TensorSpec(*, dtype, shape, data_ptr, data_len): one tensor for
    serialize / serialize_file. DTYPE is a framework-style name ("float32",
    "bfloat16", ...; unknown: SafetensorError); SHAPE the element counts
    (for "float4_e2m1fn_x2" the storage shape, two elements per byte: its
    last dimension is doubled); the DATA_LEN bytes at address DATA_PTR must
    stay alive while a serialize call uses the spec. Immutable."""

    __slots__ = ("_dtype", "_shape", "_data_ptr", "_data_len")

    def __init__(self, *, dtype, shape, data_ptr, data_len):
        if not isinstance(dtype, str):
            raise TypeError(f"dtype must be a str, not {type(dtype).__name__}")
        if dtype not in DTYPE_CODES:
            raise Error(f'Unknown dtype "{dtype}". Supported dtypes: '
                        + ", ".join(DTYPE_CODES), code="invalid_argument")
        shape = [_count(d) for d in shape]
        if DTYPE_CODES[dtype] == "F4" and shape:
            shape[-1] *= 2
        object.__setattr__(self, "_dtype", DTYPE_CODES[dtype])
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_data_ptr", _count(data_ptr))
        object.__setattr__(self, "_data_len", _count(data_len))

    def __setattr__(self, name, value):
        raise AttributeError("TensorSpec is immutable")

    dtype = property(lambda self: self._dtype, doc="The safetensors dtype code (\"F32\", ...).")
    shape = property(lambda self: list(self._shape), doc="The element counts per dimension.")
    data_ptr = property(lambda self: self._data_ptr, doc="The address of the bytes.")
    data_len = property(lambda self: self._data_len, doc="Their length in bytes.")

    def __repr__(self):
        return (f"TensorSpec(dtype='{self._dtype}', shape={self._shape}, "
                f"data_ptr={self._data_ptr}, data_len={self._data_len})")


def _count(value):
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"expected a non-negative int, not {type(value).__name__}")
    value = value.__index__()
    if value < 0:
        raise OverflowError(f"expected a non-negative int, got {value}")
    return value


def _tuples(tensor_dict):
    """[(name, dtype code, shape, address, length)] of a dict name -> TensorSpec."""
    if not isinstance(tensor_dict, dict):
        raise TypeError(f"tensor_dict must be a dict, not {type(tensor_dict).__name__}")
    out = []
    for name, spec in tensor_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}")
        if not isinstance(spec, TensorSpec):
            raise TypeError(f"tensor {name!r}: expected a TensorSpec, not {type(spec).__name__}")
        out.append((name, spec.dtype, spec.shape, spec.data_ptr, spec.data_len))
    return out


def _metadata(metadata):
    """METADATA (None or a dict str -> str) as (key, value) pairs, in order."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {value!r}")
    return list(metadata.items())


def serialize(tensor_dict, metadata=None):
    """The safetensors file of TENSOR_DICT (name -> TensorSpec) and METADATA
    (str -> str) as bytes, laid out as the reference writer lays it out."""
    return _shardload.serialize(_tuples(tensor_dict), _metadata(metadata))


def serialize_file(tensor_dict, filename, metadata=None):
    """Writes serialize(TENSOR_DICT, METADATA) to FILENAME (str or
    os.PathLike) atomically: a temporary file in the same directory, fsync,
    rename; a failure leaves the previous file. Returns None."""
    _shardload.write_file(os.fsencode(filename), _tuples(tensor_dict), _metadata(metadata))


def parse(data):
    """(metadata or None, [(name, dtype, shape, offset, nbytes)] in file
    order) of the safetensors file held in DATA (bytes-like), validated as a
    file on disk is. Raises SafetensorError naming "<bytes>"."""
    return _shardload.parse_buffer(data)


def deserialize(bytes):  # noqa: A002 (safetensors' parameter name)
    """[(name, {"shape": [...], "dtype": "F32", "data": bytearray})] of the
    safetensors file held in BYTES, in file order (one copy of each
    tensor's bytes)."""
    view = memoryview(bytes).cast("B")  # held: a bytearray cannot be resized meanwhile
    _, tensors = parse(view)
    return [(name, {"shape": list(shape), "dtype": dtype,
                    "data": bytearray(view[offset:offset + nbytes])})
            for name, dtype, shape, offset, nbytes in tensors]


def load(data, framework):
    """The tensors of the safetensors file held in DATA as a dict name -> new
    numpy array (FRAMEWORK "np") or CPU tensor ("pt"), as load_file types
    them, each tensor's bytes copied once (memmove, the GIL released)."""
    source = numpy.frombuffer(data, dtype=numpy.uint8)  # held: DATA cannot be resized meanwhile
    _, tensors = parse(source)
    base = source.ctypes.data
    out = {}
    for name, dtype, shape, offset, nbytes in tensors:
        out[name], address = _empty(framework, dtype, shape, nbytes)
        if nbytes:
            ctypes.memmove(address, base + offset, nbytes)
    return out
