"""shardload.numpy: safetensors.numpy's load_file, loading in parallel
(differences: docs/python.md).
Thread-safe: each call makes its own loader; the GIL is released while reading."""
from ._load import run as _run
from ._args import load_request as _load_request
from ._checkpoint import open as _open


def load_file(filename):
    """Loads every tensor of FILENAME (a .safetensors file, an index, a
    directory or a Hugging Face snapshot) as a dict name -> numpy array.
    Arrays of dtypes numpy lacks are unsigned-integer views of the same bits
    (BF16 -> uint16, F8 -> uint8; see shardload.load)."""
    request = _load_request(rank=None, world=None, plan=None, select=None, threads=None,
                            direct=False, framework="numpy", progress=None)
    return dict(_run(_open(filename)._handle, request))
