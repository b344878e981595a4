"""Loading: runs a checked Request against an opened checkpoint and wraps the
result as a LoadedTensors mapping."""
from . import _args, _progress, _shardload


class LoadedTensors(dict):
    """name -> array (or torch tensor), in name order, plus what describes them.

    Attributes:
      dtypes: name -> safetensors dtype name ("BF16", "F32", ...); the arrays
        of dtypes numpy lacks are unsigned-integer views (BF16 -> uint16, F8
        -> uint8, F4/F6 -> packed uint8), so this says what the bits are.
      stats: the load's statistics, as `shardload load --json` reports them
        (tensors, bytes, bytes_read, seconds, gb_per_s, backend,
        backend_reason, threads, direct, mode, bytes_direct, bytes_buffered,
        mode_note, read_ops, short_reads, retries, memory, device, transfer;
        verified with verify=), plus rank, world and plan for a tensor-parallel
        load.
      memory: the LoadedMemory holding every tensor's bytes (each numpy
        array's .base). The memory lives while any array, tensor or this
        mapping refers to it.
    """

    def __init__(self, tensors, dtypes, stats, memory):
        super().__init__(tensors)
        self.dtypes = dtypes
        self.stats = stats
        self.memory = memory

    def __repr__(self):
        return (f"<shardload.LoadedTensors: {len(self)} tensors, "
                f"{self.stats.get('bytes', 0)} bytes>")


def run(handle, request):
    """Loads REQUEST (an _args.Request) from HANDLE (a CheckpointHandle)."""
    if request.framework == "torch":
        from . import _torch  # before reading: ImportError when torch is missing
    progress = _progress.reporter(request.progress, "shardload.load")
    try:
        memory = _shardload.load(
            handle, globs=request.globs, threads=request.threads, mode=request.mode,
            rank=request.rank, world=request.world, progress=progress,
            max_over_read=request.max_over_read, read_strategy=request.read_strategy,
            device=request.device,
            verify=request.verify, dtype=request.dtype, **request.plan_kwargs())
    finally:
        _progress.close(progress)
    dtypes = memory.dtypes()
    if request.framework == "torch":
        tensors = _torch.tensors(memory, dtypes)
    else:
        tensors = memory.arrays()
    stats = memory.stats()
    stats.update(request.rank_info() or {})
    return LoadedTensors(tensors, dtypes, stats, memory)
