"""shardload.numpy: safetensors.numpy's load, load_file, save and save_file
(files read in parallel; written by the C++ writer, atomically).
Thread-safe: each call makes its own loader or writer; the GIL is released
while reading and writing."""
import numpy as _np

from . import _serialize
from ._args import load_request as _load_request
from ._load import run as _run
from ._safe_open import backend_mode as _backend_mode, open_checkpoint as _open_checkpoint


def load_file(filename, *, backend="mmap"):
    """Loads every tensor of FILENAME (a .safetensors file, an index, a
    directory or a Hugging Face snapshot) as a dict name -> numpy array.
    Arrays of dtypes numpy lacks are unsigned-integer views of the same bits
    (BF16 -> uint16, F8 -> uint8; see shardload.load). BACKEND: as safe_open."""
    request = _load_request(rank=None, world=None, plan=None, select=None, threads=None,
                            direct=False, framework="numpy", progress=None,
                            mode=_backend_mode(backend))
    return dict(_run(_open_checkpoint(filename)._handle, request))


def load(data):
    """The tensors of the safetensors file held in DATA (bytes-like), as a
    dict name -> new numpy array (each tensor's bytes copied once), validated
    as load_file validates a file."""
    return _serialize.load(data, "np")


def _specs(tensor_dict, keep_alive):
    """name -> TensorSpec of each array's little-endian C-contiguous bytes
    (converted copies, when needed, are kept alive in KEEP_ALIVE)."""
    if not isinstance(tensor_dict, dict):
        raise TypeError(f"tensor_dict must be a dict, not {type(tensor_dict).__name__}")
    specs = {}
    for name, array in tensor_dict.items():
        array = _np.asarray(array)
        if array.dtype.byteorder == ">" or not array.flags.c_contiguous:
            array = _np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        keep_alive.append(array)
        specs[name] = _serialize.TensorSpec(dtype=_dtype_name(array.dtype), shape=array.shape,
                                            data_ptr=array.ctypes.data, data_len=array.nbytes)
    return specs


def _dtype_name(dtype):
    if dtype == _np.bool_:
        return "bool"
    return dtype.newbyteorder("=").name


def save(tensor_dict, metadata=None):
    """TENSOR_DICT (name -> numpy array) and METADATA (str -> str) as the
    bytes of a safetensors file."""
    keep_alive = []
    return _serialize.serialize(_specs(tensor_dict, keep_alive), metadata=metadata)


def save_file(tensor_dict, filename, metadata=None):
    """Writes TENSOR_DICT (name -> numpy array) and METADATA to FILENAME
    (str or os.PathLike) atomically, with the reference writer's layout."""
    keep_alive = []
    _serialize.serialize_file(_specs(tensor_dict, keep_alive), filename, metadata=metadata)
