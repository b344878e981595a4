"""Loading: runs a checked Request against an opened checkpoint and wraps the
result as a LoadedTensors mapping."""
from . import _args, _cooperate, _progress, _shardload


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
        load; for a cooperative one, cooperate ("torchrun" or "group"), job
        (the run id, under torchrun) and cooperation (local_rank,
        local_size, how, node_bytes, read_for_node, bytes_staged, bytes_shared,
        bytes_direct, waves, wait_seconds, as `load --json` reports them).
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


def checked_load(open_handle, *, rank, world, plan, select, threads, direct, mode, framework,
                 progress, max_over_read, device, verify, dtype, read_strategy, gds, group,
                 cooperate, staging, peer_timeout):
    """load()'s arguments checked before any file is opened (TypeError,
    ValueError), then OPEN_HANDLE() (the CheckpointHandle), the node's ranks
    met for a cooperative load, and the load itself."""
    rank, world, coop = _cooperate.checked(group=group, rank=rank, world=world,
                                           cooperate=cooperate, staging=staging,
                                           peer_timeout=peer_timeout)
    request = _args.load_request(rank=rank, world=world, plan=plan, select=select,
                                 threads=threads, direct=direct, mode=mode,
                                 framework=framework, progress=progress,
                                 max_over_read=max_over_read, device=device,
                                 verify=verify, dtype=dtype, read_strategy=read_strategy,
                                 gds=gds)
    handle = open_handle()
    return run(handle, request, coop.connected())


def run(handle, request, coop=_cooperate.ALONE):
    """Loads REQUEST (an _args.Request) from HANDLE (a CheckpointHandle),
    cooperating through COOP (a connected _cooperate.CoopArg)."""
    if request.framework == "torch":
        from . import _torch  # before reading: ImportError when torch is missing
    progress = _progress.reporter(request.progress, "shardload.load")
    try:
        memory = _shardload.load(
            handle, globs=request.globs, threads=request.threads, mode=request.mode,
            rank=request.rank, world=request.world, progress=progress,
            max_over_read=request.max_over_read, read_strategy=request.read_strategy,
            device=request.device,
            verify=request.verify, dtype=request.dtype, gds=request.gds,
            **request.plan_kwargs(), **coop.kwargs())
    finally:
        _progress.close(progress)
    dtypes = memory.dtypes()
    if request.framework == "torch":
        tensors = _torch.tensors(memory, dtypes)
    else:
        tensors = memory.arrays()
    stats = memory.stats()
    stats.update(request.rank_info() or {})
    stats.update(coop.info() or {})
    return LoadedTensors(tensors, dtypes, stats, memory)
