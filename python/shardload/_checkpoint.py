"""shardload.open() and Checkpoint: a checkpoint's description (tensors,
shards, metadata, per-rank plans) from its headers, without reading tensor
data; Checkpoint.load() loads from it without resolving it again."""
from collections.abc import Mapping

from . import _args, _cooperate, _load, _shardload
from ._types import PlannedTensor, QuantSplit, RankPlan, ShardInfo, TensorInfo


def open(path):  # shadows the builtin inside the package, by design
    """Resolves and validates the checkpoint at PATH (a .safetensors file, a
    *.safetensors.index.json, a directory or a Hugging Face snapshot),
    reading headers only. Raises shardload.Error."""
    return Checkpoint(_shardload.open_checkpoint(_args.fs_path(path)))


class Checkpoint(Mapping):
    """A resolved checkpoint: a read-only mapping name -> TensorInfo, in name
    order. Immutable; safe to share between threads. Its load, load_into and
    plan calls share one loader, kept (with its threads, device and gds) by
    the handle across calls."""

    def __init__(self, handle):
        self._handle = handle
        self._names = None

    # --- the mapping: name -> TensorInfo ---

    def __getitem__(self, name):
        info = self._find(name)
        if info is None:
            raise KeyError(name)
        return TensorInfo(**info)

    def __iter__(self):
        return iter(self._all_names())

    def __len__(self):
        return len(self._handle)

    def __contains__(self, name):
        return self._find(name) is not None

    def _find(self, name):
        """The fields of NAME's TensorInfo, or None. Names are UTF-8, so a str
        that does not encode (lone surrogates) names nothing."""
        if not isinstance(name, str):
            return None
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return self._handle.find(name)

    def tensor(self, name):
        """The TensorInfo of NAME (KeyError when absent): .dtype, .shape,
        .shard, .offset, .nbytes."""
        return self[name]

    def _all_names(self):
        if self._names is None:
            self._names = self._handle.names()
        return self._names

    # --- the checkpoint as a whole ---

    @property
    def path(self):
        """The path given to open()."""
        return self._handle.path

    @property
    def index_path(self):
        """The index file used, or None (a single file, an index-less directory)."""
        return self._handle.index_path or None

    @property
    def nbytes(self):
        """Bytes of all tensors."""
        return self._handle.total_bytes

    @property
    def shards(self):
        """The shard files, as a list of ShardInfo."""
        return [ShardInfo(**s) for s in self._handle.shards()]

    @property
    def warnings(self):
        """Non-fatal findings (e.g. a tensor in a shard but not in the
        index), as shardload.Error values (not raised)."""
        return self._handle.warnings()

    def metadata(self):
        """The shards' __metadata__ (dict of str) when they all have the same;
        None when it is absent or differs between shards (see .shards)."""
        shards = self._handle.shards()
        if not shards:
            return None
        first = shards[0]["metadata"]
        return first if all(s["metadata"] == first for s in shards) else None

    def index_metadata(self):
        """The index's "metadata" object (values as str; non-string JSON
        values as their compact JSON text); {} without an index."""
        return self._handle.index_metadata()

    def plan(self, *, world=None, rank=None, plan=None, select=None, threads=None,
             direct=False, mode=None, max_over_read=None, read_strategy=None):
        """What tensor-parallel ranks would load, from the headers only (no
        tensor data is read). Returns one RankPlan for RANK, or a list with
        one per rank when RANK is None. Arguments as load(); read_ops depends
        on THREADS. Raises shardload.Error when the plan does not fit."""
        request = _args.plan_request(rank=rank, world=world, plan=plan, select=select,
                                     threads=threads, direct=direct, mode=mode,
                                     max_over_read=max_over_read, read_strategy=read_strategy)
        # No rank: every rank, from one resolution of the plan (ranks=[]).
        ranks = [] if request.rank is None else [request.rank]
        plans = _shardload.plan(self._handle, globs=request.globs, threads=request.threads,
                                mode=request.mode, ranks=ranks, world=request.world,
                                max_over_read=request.max_over_read,
                                read_strategy=request.read_strategy,
                                **request.plan_kwargs())
        plans = [_rank_plan(p) for p in plans]
        return plans if request.rank is None else plans[0]

    def load_into(self, tensors, *, rank=None, world=None, plan=None, threads=None,
                  direct=False, group=None, cooperate=None, staging=None, peer_timeout=None):
        """Loads each tensor into the buffer TENSORS maps its name to, in
        place: torch tensors (CPU or CUDA, e.g. a model's parameters),
        numpy arrays, or objects with __cuda_array_interface__; contiguous,
        writeable, all on one device, each of the tensor's size in bytes
        (the rank's local size with a plan). Returns the load's stats.
        Arguments as load() (cooperating ranks included); raises
        shardload.Error as load() does."""
        rank, world, coop = _cooperate.checked(group=group, rank=rank, world=world,
                                               cooperate=cooperate, staging=staging,
                                               peer_timeout=peer_timeout)
        request = _args.load_request(rank=rank, world=world, plan=plan, select=None,
                                     threads=threads, direct=direct, framework="numpy",
                                     progress=None)
        names, ptrs, sizes, device = _args.destinations(tensors)
        coop = coop.connected()
        stats = _shardload.load_into(self._handle, names=names, addresses=ptrs, sizes=sizes,
                                     threads=request.threads, mode=request.mode,
                                     rank=request.rank, world=request.world, progress=None,
                                     device=device, **request.plan_kwargs(), **coop.kwargs())
        stats.update(request.rank_info() or {})
        stats.update(coop.info() or {})
        return stats

    def load(self, *, rank=None, world=None, plan=None, select=None, threads=None,
             direct=False, mode=None, framework="numpy", progress=None, max_over_read=None,
             device="cpu", verify=None, dtype=None, read_strategy=None, gds=False, group=None, cooperate=None,
             staging=None, peer_timeout=None):
        """Loads from this checkpoint; as shardload.load() without resolving
        the path again."""
        return _load.checked_load(
            lambda: self._handle, rank=rank, world=world, plan=plan, select=select,
            threads=threads, direct=direct, mode=mode, framework=framework, progress=progress,
            max_over_read=max_over_read, device=device, verify=verify, dtype=dtype,
            read_strategy=read_strategy, gds=gds,
            group=group, cooperate=cooperate, staging=staging, peer_timeout=peer_timeout)

    def __repr__(self):
        return (f"<shardload.Checkpoint {self.path!r}: {len(self)} tensors, "
                f"{len(self._handle.shards())} shards, {self.nbytes} bytes>")


def _planned_tensor(fields):
    quant = fields.pop("quant")
    return PlannedTensor(quant=QuantSplit(**quant) if quant is not None else None, **fields)


def _rank_plan(fields):
    tensors = {t["name"]: _planned_tensor(t) for t in fields.pop("tensors")}
    return RankPlan(tensors=tensors, **fields)
