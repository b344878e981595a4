"""The plain values shardload returns: descriptions of tensors, shards and
per-rank plans. Frozen dataclasses; nothing here reads files."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint, as its header describes it."""
    name: str
    dtype: str               # safetensors dtype name: "BF16", "F32", "F8_E4M3", ...
    shape: Tuple[int, ...]   # () for a scalar
    shard: str               # the shard file's name (as the index names it)
    offset: int              # absolute byte offset of its data in the shard file
    nbytes: int


@dataclass(frozen=True)
class ShardInfo:
    """One safetensors file of a checkpoint."""
    name: str                # as the index's weight_map names it, or the file name
    path: str                # the path opened
    file_size: int
    header_size: int         # N, the JSON header's length
    data_offset: int         # 8 + N
    metadata: Optional[Dict[str, str]]  # its __metadata__ (None when absent)
    num_tensors: int         # tensors read from this shard


@dataclass(frozen=True)
class QuantSplit:
    """How a quantized tensor follows its weight's split (docs/tp-plan.md,
    "Quantized checkpoints"; `plan --json`'s "quant" object)."""
    follows: Optional[str]   # the weight a companion follows; None for the weight itself
    split_dim: int           # the dimension split; -1: whole
    per: int                 # weight indices per index of split_dim (block, group, packing); 0: not split
    # Per piece, in local order: ((weight_begin, weight_end), (begin, end)):
    # the weight's indices on its split dimension and this tensor's on split_dim.
    ranges: Tuple[Tuple[Tuple[int, int], Tuple[int, int]], ...]
    straddles: bool          # a block of it also goes to another rank


@dataclass(frozen=True)
class PlannedTensor:
    """What one tensor-parallel rank gets of one tensor."""
    name: str
    dtype: str
    shape: Tuple[int, ...]   # the local shape
    nbytes: int              # local bytes (vocab padding included)
    rule: str                # the plan rule that decided it
    strategy: str            # how its reads are planned: "exact", "staged", "mixed" or "mapped"
    bytes_read: int          # bytes its reads take from storage
    read_ops: int            # reads issued for it
    quant: Optional[QuantSplit] = None  # quantized tensors under a quantization_config


@dataclass(frozen=True)
class RankPlan:
    """One rank's share of a load, computed from the headers only."""
    rank: int
    world: int
    tensors: Dict[str, PlannedTensor]  # by name, in name order
    bytes: int               # bytes received from storage (vocab padding excluded)
    local_bytes: int         # memory the local tensors take (padding included)
    bytes_read: int          # bytes read from storage (gaps read by staged reads and O_DIRECT alignment included)
    read_ops: int            # read requests the load would submit

    @property
    def read_amplification(self) -> float:
        """bytes_read / bytes (1.0 for exact buffered reads, or when nothing is read)."""
        return self.bytes_read / self.bytes if self.bytes else 1.0
