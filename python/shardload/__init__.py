"""shardload: load sharded safetensors checkpoints in parallel (io_uring),
whole or one tensor-parallel rank's slices, into numpy arrays or torch
tensors without copies. docs/python.md has the guide and the reference.

    import shardload
    tensors = shardload.load("path/to/checkpoint")             # name -> numpy array
    shard = shardload.load(path, rank="env", world="env", plan="hf",
                           framework="torch")                  # under torchrun
    ckpt = shardload.open(path)                                 # headers only
"""
from ._checkpoint import Checkpoint, open
from ._error import Error
from ._load import LoadedTensors
from ._shardload import LoadedMemory, __version__
from ._types import PlannedTensor, RankPlan, ShardInfo, TensorInfo
from . import _args, _load


def load(path, *, rank=None, world=None, plan=None, select=None, threads=None, direct=False,
         framework="numpy", progress=None, verify=None, dtype=None):
    """Loads the checkpoint at PATH; returns a LoadedTensors (a dict name ->
    array, with .dtypes, .stats and .memory).

    path: a .safetensors file, a *.safetensors.index.json, a directory or a
      Hugging Face snapshot (str, bytes or os.PathLike).
    rank, world: this tensor-parallel rank and the world size: ints, or
      "env" for torchrun's $RANK / $WORLD_SIZE. They need a plan (world 1,
      rank 0 without one is a plain load).
    plan: a plan JSON file, "hf" (the base_model_tp_plan of the
      config.json beside the checkpoint), a path ending in config.json, or a
      dict (a plan with "tp_plan_version", else a Hugging Face config).
    select: a name or glob, or a list of them (`*` one dot-separated
      component, `**` any number, `re:` a regex); each must match.
    threads: worker count (default: one per CPU).
    direct: O_DIRECT reads, bypassing the page cache.
    framework: "numpy" (zero-copy views) or "torch" (zero-copy through DLPack).
    progress: called as progress(bytes_done, bytes_total) from the loader's
      threads (with the GIL); an exception it raises is re-raised by load()
      once the reads have finished.
    verify: a manifest path (`sha256sum` output or a JSON object name ->
      SHA-256 hex): the shards read are checked, a mismatch raises
      shardload.Error (code "checksum_mismatch", path the file) and nothing is
      returned; stats["verified"] says how (docs/python.md).
    dtype: "F32", "F16" or "BF16": floating-point tensors (BF16, F16, F32,
      F8_E4M3, F8_E5M2) are converted while loaded; others are unchanged.

    The GIL is released while reading. Raises shardload.Error (code, path,
    tensor) for checkpoint, plan and I/O problems, TypeError / ValueError for
    bad arguments.
    """
    request = _args.load_request(rank=rank, world=world, plan=plan, select=select,
                                 threads=threads, direct=direct, framework=framework,
                                 progress=progress, verify=verify, dtype=dtype)
    return _load.run(open(path)._handle, request)


__all__ = ["Checkpoint", "Error", "LoadedMemory", "LoadedTensors", "PlannedTensor", "RankPlan",
           "ShardInfo", "TensorInfo", "load", "open", "__version__"]
