"""How load() cooperates with the other ranks of its node (docs/python.md,
"Cooperating ranks"): under torchrun (rank="env" with LOCAL_RANK,
LOCAL_WORLD_SIZE and TORCHELASTIC_RUN_ID set) through the engine's
ConnectLocal; with group= a torch.distributed process group, through
NodeGroup, a shardload.Communicator over a gloo subgroup of the group's ranks
on this node. The subgroups are made once per group, collectively (every rank
of the group calls new_group for every node, in the same order), and cached.
Thread-compatible: called from the thread that calls load()."""
import os
import socket
from dataclasses import dataclass
from typing import Any

from . import _shardload
from ._args import _int

TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class CoopArg:
    """What the C++ side cooperates through (CoopArgs in bindings.h): a
    Communicator, else ConnectLocal(job, local_rank, local_size) when job is
    set, else nothing. Zeros keep the library's defaults."""
    communicator: Any = None
    job: str = ""
    local_rank: int = 0
    local_size: int = 1
    staging_bytes: int = 0
    peer_timeout_s: float = 0.0
    torch_group: Any = None  # a torch group whose NodeGroup connected() makes

    def connected(self):
        """This cooperation with a torch group's NodeGroup as communicator
        (made collectively on the group's first use): call it after the
        arguments are checked and the checkpoint is open."""
        if self.torch_group is None:
            return self
        import datetime
        timeout = datetime.timedelta(seconds=self.peer_timeout_s) if self.peer_timeout_s else None
        return CoopArg(_node_group(self.torch_group, timeout), self.job, self.local_rank,
                       self.local_size, self.staging_bytes, self.peer_timeout_s)

    def kwargs(self):
        return {"communicator": self.communicator, "coop_job": self.job,
                "local_rank": self.local_rank, "local_size": self.local_size,
                "staging_bytes": self.staging_bytes, "peer_timeout_s": self.peer_timeout_s}

    def info(self):
        """What the front end adds to a cooperative load's .stats (None when
        alone); the engine adds "cooperation"."""
        if self.communicator is not None or self.torch_group is not None:
            return {"cooperate": "group"}
        if self.job:
            return {"cooperate": "torchrun", "job": self.job}
        return None


ALONE = CoopArg()


class NodeGroup(_shardload.Communicator):
    """The ranks of a torch.distributed group on this node, over a gloo
    subgroup of their own: barrier() is dist.barrier on it, broadcast() a
    dist.broadcast of a uint8 CPU tensor. Called by the engine with the GIL."""

    def __init__(self, subgroup, members, local_rank):
        super().__init__(local_rank, len(members))
        self._subgroup = subgroup
        self._members = members  # global ranks of the node's members, in member order

    def barrier(self):
        import torch.distributed as dist
        dist.barrier(group=self._subgroup)

    def broadcast(self, root, data):
        import torch
        import torch.distributed as dist
        if not data:  # the same size on every member: all skip
            return data
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        dist.broadcast(tensor, src=self._members[root], group=self._subgroup)
        return tensor.numpy().tobytes()


_NODE_GROUPS = {}  # torch process group -> its NodeGroup for this process


def _host_identity():
    """This machine: host name and boot id (two containers may share a name)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _node_group(group, timeout):
    """GROUP's NodeGroup for this process (made collectively on first use)."""
    import torch.distributed as dist
    cached = _NODE_GROUPS.get(group)
    if cached is not None:
        return cached
    size = dist.get_world_size(group)
    if size != dist.get_world_size():
        # new_group is collective over the default group: every process of
        # the job must call it, not only this group's.
        raise ValueError(f"group= must hold every process of the job (its {size} ranks of "
                         f"{dist.get_world_size()}): torch.distributed.new_group, which makes "
                         "the node's subgroup, is collective over the default group")
    entries = [None] * size
    dist.all_gather_object(entries, (_host_identity(), dist.get_rank()), group=group)
    me = (_host_identity(), dist.get_rank())
    hosts = list(dict.fromkeys(host for host, _ in entries))  # first-seen order, same everywhere
    mine = None
    for host in hosts:
        members = [rank for h, rank in entries if h == host]
        kwargs = {"timeout": timeout} if timeout is not None else {}
        subgroup = dist.new_group(members, backend="gloo", **kwargs)
        if host == me[0]:
            mine = NodeGroup(subgroup, members, members.index(me[1]))
    _NODE_GROUPS[group] = mine
    return mine


def is_torch_group(group):
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return isinstance(group, dist.ProcessGroup)


def rank_and_world(group, rank, world):
    """RANK and WORLD, defaulting to GROUP's rank and size when None."""
    if group is None:
        return rank, world
    if isinstance(group, _shardload.Communicator):
        return rank, world
    if not is_torch_group(group):
        raise TypeError("group must be a torch.distributed ProcessGroup or a "
                        f"shardload.Communicator, not {type(group).__name__}")
    import torch.distributed as dist
    if rank is None:
        rank = dist.get_rank(group)
    if world is None:
        world = dist.get_world_size(group)
    return rank, world


def torchrun_job():
    """(job, local_rank, local_size) from torchrun's environment, or None
    when one of TORCHRUN_VARIABLES is unset."""
    values = [os.environ.get(v) for v in TORCHRUN_VARIABLES]
    if any(v is None or v == "" for v in values):
        return None
    job, local_rank, local_size = values
    for name, text in (("LOCAL_RANK", local_rank), ("LOCAL_WORLD_SIZE", local_size)):
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"${name} must be a non-negative integer, got {text!r}")
    local_rank, local_size = int(local_rank), int(local_size)
    if not 0 <= local_rank < local_size:
        raise ValueError(f"$LOCAL_RANK {local_rank} is not below $LOCAL_WORLD_SIZE {local_size}")
    return job, local_rank, local_size


def _options(staging, peer_timeout):
    staging_bytes = 0
    if staging is not None:
        staging_bytes = _int(staging, "staging")
        if staging_bytes <= 0:
            raise ValueError(f"staging must be a positive byte count, got {staging_bytes}")
    timeout_s = 0.0
    if peer_timeout is not None:
        if isinstance(peer_timeout, bool) or not isinstance(peer_timeout, (int, float)):
            raise TypeError(f"peer_timeout must be a number of seconds, "
                            f"not {type(peer_timeout).__name__}")
        if not peer_timeout > 0:
            raise ValueError(f"peer_timeout must be positive, got {peer_timeout}")
        timeout_s = float(peer_timeout)
    return staging_bytes, timeout_s


def cooperation(*, cooperate, group, rank, staging, peer_timeout):
    """The checked cooperation of a load (no collective call yet: see
    CoopArg.connected). COOPERATE: None (cooperate when group= is given, or
    rank="env" under torchrun), True (must) or False (never). RANK is
    load()'s rank argument as given."""
    if cooperate is not None and not isinstance(cooperate, bool):
        raise TypeError(f"cooperate must be a bool or None, not {type(cooperate).__name__}")
    staging_bytes, timeout_s = _options(staging, peer_timeout)
    if cooperate is False:
        return ALONE
    if group is not None:
        if isinstance(group, _shardload.Communicator):
            return CoopArg(group, staging_bytes=staging_bytes, peer_timeout_s=timeout_s)
        if not is_torch_group(group):
            raise TypeError("group must be a torch.distributed ProcessGroup or a "
                            f"shardload.Communicator, not {type(group).__name__}")
        return CoopArg(staging_bytes=staging_bytes, peer_timeout_s=timeout_s, torch_group=group)
    torchrun = torchrun_job() if rank == "env" else None
    if torchrun is not None:
        job, local_rank, local_size = torchrun
        return CoopArg(None, job, local_rank, local_size, staging_bytes, timeout_s)
    if cooperate:
        raise ValueError('cooperate=True needs group= or torchrun\'s environment (rank="env" '
                         "with $TORCHELASTIC_RUN_ID, $LOCAL_RANK and $LOCAL_WORLD_SIZE set)")
    return ALONE


def checked(*, group, rank, world, cooperate, staging, peer_timeout):
    """(rank, world, CoopArg) of a load's arguments: RANK and WORLD defaulted
    from GROUP, the cooperation checked (not yet connected)."""
    coop = cooperation(cooperate=cooperate, group=group, rank=rank, staging=staging,
                       peer_timeout=peer_timeout)
    rank, world = rank_and_world(group, rank, world)
    return rank, world, coop
