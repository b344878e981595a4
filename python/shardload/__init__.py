"""shardload: load sharded safetensors checkpoints in parallel (io_uring),
whole or one tensor-parallel rank's slices, into numpy arrays or torch
tensors without copies. docs/python.md has the guide and the reference.

    import shardload
    tensors = shardload.load("path/to/checkpoint")             # name -> numpy array
    shard = shardload.load(path, rank="env", world="env", plan="hf",
                           framework="torch")                  # under torchrun: the node's ranks cooperate
    ckpt = shardload.open(path)                                 # headers only
    with shardload.safe_open(path, framework="pt") as f:       # as safetensors
        w = f.get_slice("lm_head.weight")[:, 0:128]
    shardload.torch.load_into(model, path)                     # into existing params
    shardload.torch.save_file(tensors, "out.safetensors")      # as safetensors, atomically
"""
from ._checkpoint import Checkpoint, open
from ._error import Error, SafetensorError
from ._load import LoadedTensors
from ._safe_open import safe_open
from ._serialize import TensorSpec, deserialize, serialize, serialize_file
from ._shardload import Communicator, LoadedMemory, __version__
from ._types import PlannedTensor, QuantSplit, RankPlan, ShardInfo, TensorInfo
from . import _args, _load


def load(path, *, rank=None, world=None, plan=None, select=None, threads=None, direct=False,
         mode=None, framework="numpy", progress=None, max_over_read=None, device="cpu",
         verify=None, dtype=None, read_strategy=None, gds=False, group=None, cooperate=None, staging=None,
         peer_timeout=None):
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
    direct: O_DIRECT reads, bypassing the page cache (as mode="direct").
    mode: "auto" (default: what the page cache holds is read through it, the
      rest with O_DIRECT), "buffered" (every read through the page cache) or
      "direct" (every read with O_DIRECT).
    max_over_read: per tensor, bytes read / bytes received at most this
      (a number >= 1; 1 reads slices' rows exactly; default 8: the cost
      model may read through gaps between rows and scatter them).
    read_strategy: how slices' rows are read: "auto" (default, the cost
      model), "exact", "staged", "mixed" or "mapped" (as `--read-strategy`,
      docs/tp-plan.md).
    framework: "numpy" (zero-copy views) or "torch" (zero-copy through DLPack).
    progress: True for a tqdm bar (a plain line on stderr without tqdm), or
      a callable, called as progress(bytes_done, bytes_total) from the
      loader's threads (with the GIL); an exception it raises cancels the
      load and is re-raised by load().
    device: "cpu" (default) or "cuda:N": with framework="torch", the tensors
      land in that CUDA device's memory (pinned staging, one allocation for
      the load) and come back as torch CUDA tensors through DLPack, no copy.
      Without the CUDA runtime or the device: shardload.Error "unsupported".
    gds: with device="cuda:N", GPUDirect Storage: what is read with O_DIRECT
      goes by cuFile straight into device memory; without libcufile or its
      driver it is staged as usual, stats["transfer"] saying why.
    verify: a manifest path (`sha256sum` output or a JSON object name ->
      SHA-256 hex): the shards read are checked, a mismatch raises
      shardload.Error (code "checksum_mismatch", path the file) and nothing is
      returned; stats["verified"] says how (docs/python.md).
    dtype: "F32", "F16" or "BF16": floating-point tensors (BF16, F16, F32,
      F8_E4M3, F8_E5M2) are converted while loaded; others are unchanged.
    group: a torch.distributed ProcessGroup holding every process of the job
      (e.g. torch.distributed.group.WORLD): the ranks on this node load
      cooperatively, each byte read once per node (docs/cooperate.md), meeting
      over a gloo subgroup of their own, made collectively on first use and
      cached; rank and world default to the group's. Or a
      shardload.Communicator (the node's ranks themselves).
    cooperate: None (default: cooperate when group= is given, or under
      torchrun when rank="env" and $TORCHELASTIC_RUN_ID, $LOCAL_RANK and
      $LOCAL_WORLD_SIZE are set), True (must; ValueError when neither
      applies) or False (load alone).
    staging: bytes of shared staging memory for the whole node (default 1 GiB).
    peer_timeout: seconds a rank waits for the others at any step before
      failing (default 60; a dead rank is noticed at once).

    The GIL is released while reading; Ctrl-C (KeyboardInterrupt) cancels
    the load (it stops once its reads in flight are done), frees its memory
    and is re-raised. Raises shardload.Error (code, path,
    tensor) for checkpoint, plan and I/O problems (code "peer_failed" when
    another cooperating rank failed or died, "peer_mismatch" when the node's
    ranks disagree on the job), TypeError / ValueError for bad arguments.
    """
    return _load.checked_load(
        lambda: open(path)._handle, rank=rank, world=world, plan=plan, select=select,
        threads=threads, direct=direct, mode=mode, framework=framework, progress=progress,
        max_over_read=max_over_read, device=device, verify=verify, dtype=dtype,
        read_strategy=read_strategy, gds=gds, group=group,
        cooperate=cooperate, staging=staging, peer_timeout=peer_timeout)


__all__ = ["Checkpoint", "Communicator", "Error", "LoadedMemory", "LoadedTensors", "PlannedTensor", "QuantSplit", "RankPlan",
           "SafetensorError", "ShardInfo", "TensorInfo", "TensorSpec", "deserialize", "load",
           "open", "safe_open", "serialize", "serialize_file", "__version__"]
