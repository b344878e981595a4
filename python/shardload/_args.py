"""Checks the arguments of load(), Checkpoint.load() and Checkpoint.plan()
before any file is touched: a wrong type raises TypeError, a wrong value
ValueError. Also turns the plan into what the C++ side takes (PlanArg): a
dict is passed as JSON text in memory, never through a file."""
import json
import operator
import os
import re
from dataclasses import dataclass
from typing import Any, List, Optional

from ._error import Error

MAX_THREADS = 1024      # as `shardload load --threads`
MAX_WORLD = 1 << 20     # as `shardload load --world`
FRAMEWORKS = ("numpy", "torch")
MODES = ("auto", "buffered", "direct")  # LoadOptions::mode
DICT_PLAN = "<plan dict>"  # how errors name a plan given as a dict


@dataclass(frozen=True)
class PlanArg:
    """The plan as the C++ side takes it (a shardload::PlanSource): KIND "hf",
    "file" (PATH holds our plan JSON or a Hugging Face config.json, told apart
    by its content), "json" or "hf_config_json" (TEXT, a dict serialized: ours
    when it has "tp_plan_version"; errors name PATH, DICT_PLAN)."""
    kind: str
    path: bytes = b""
    text: str = ""

    def kwargs(self):
        return {"plan_kind": self.kind, "plan_path": self.path, "plan_text": self.text}


NO_PLAN = PlanArg("")


@dataclass(frozen=True)
class Request:
    """A checked load or plan request."""
    globs: List[str]
    threads: int                 # 0: one worker per CPU
    mode: str                    # one of MODES
    rank: Optional[int]          # None (plan only): every rank
    world: int
    plan: Optional[PlanArg]      # None: no plan
    framework: str = "numpy"
    progress: Any = None         # None, a bool or a callable (_progress.py)
    max_over_read: float = 0.0   # 0: the library's default
    read_strategy: str = "auto"  # one of READ_STRATEGIES
    device: str = "cpu"          # "cpu" or "cuda:N"
    verify: str = ""             # manifest path ("" for none)
    dtype: str = ""              # "F32", "F16", "BF16" ("" for none)
    gds: bool = False            # GPUDirect Storage (device loads)

    def rank_info(self):
        """What a tensor-parallel load adds to .stats (None for a plain load)."""
        if self.plan is None:
            return None
        plan = "hf" if self.plan.kind == "hf" else os.fsdecode(self.plan.path)
        return {"rank": self.rank, "world": self.world, "plan": plan}

    def plan_kwargs(self):
        """The plan_kind, plan_path and plan_text arguments of the C++ call."""
        return (self.plan or NO_PLAN).kwargs()


def fs_path(path) -> bytes:
    """PATH (str, bytes or os.PathLike) as the bytes the C++ side opens."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be str, bytes or os.PathLike, not {type(path).__name__}")
    encoded = os.fsencode(path)
    if not encoded:
        raise ValueError("path is empty")
    return encoded


def _globs(select) -> List[str]:
    if select is None:
        return []
    if isinstance(select, str):
        items = [select]
    elif isinstance(select, (bytes, bytearray)) or not hasattr(select, "__iter__"):
        raise TypeError(f"select must be a str or a list of str, not {type(select).__name__}")
    else:
        items = list(select)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"select must hold str, not {type(item).__name__}")
        if not item:
            raise ValueError("select holds an empty pattern")
    if not items:
        raise ValueError("select is empty: pass None to load every tensor")
    return items


def _threads(threads) -> int:
    if threads is None:
        return 0
    value = _int(threads, "threads")
    if not 1 <= value <= MAX_THREADS:
        raise ValueError(f"threads must be between 1 and {MAX_THREADS}, got {value}")
    return value


def _int(value, name) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def _int_or_env(value, name, variable) -> Optional[int]:
    """None, an int, or "env": the environment variable (as torchrun sets it)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return _int(value, name)
    if value != "env":
        raise ValueError(f'{name} must be an int or "env", not {value!r}')
    text = os.environ.get(variable)
    if text is None:
        raise ValueError(f'{name}="env" but ${variable} is not set')
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f'{name}="env" needs ${variable} to be a non-negative integer, '
                         f"got {text!r}")
    return int(text)


def _plan(plan):
    if plan is None:
        return None
    if isinstance(plan, dict):
        kind = "json" if "tp_plan_version" in plan else "hf_config_json"
        return PlanArg(kind, os.fsencode(DICT_PLAN), json.dumps(plan))  # TypeError when not JSON
    if not isinstance(plan, (str, bytes, os.PathLike)):
        raise TypeError("plan must be a path, \"hf\" or a dict, "
                        f"not {type(plan).__name__}")
    encoded = os.fsencode(plan)
    if not encoded:
        raise ValueError('plan is empty: pass a plan file, "hf", a config.json or a dict')
    return PlanArg("hf") if encoded == b"hf" else PlanArg("file", encoded)


def _world_and_rank(rank, world, plan, every_rank_allowed):
    world = _int_or_env(world, "world", "WORLD_SIZE")
    rank = _int_or_env(rank, "rank", "RANK")
    if world is None:
        if plan is not None:
            raise ValueError('a plan needs world (an int, or "env" for $WORLD_SIZE)')
        world = 1
    if not 1 <= world <= MAX_WORLD:
        raise ValueError(f"world must be between 1 and {MAX_WORLD}, got {world}")
    if plan is None and world > 1:
        raise ValueError(f"world {world} needs a plan (a plan file, \"hf\" or a dict)")
    if rank is None:
        if every_rank_allowed:
            return None, world
        if world == 1:
            rank = 0
        else:
            raise ValueError(f'world {world} needs rank (an int, or "env" for $RANK)')
    elif not 0 <= rank < world:
        raise ValueError(f"rank must be below the world size {world}, got {rank}")
    return rank, world


DTYPES = ("F32", "F16", "BF16")   # as `shardload load --dtype`


def _verify(verify) -> str:
    if verify is None:
        return ""
    if not isinstance(verify, (str, bytes, os.PathLike)):
        raise TypeError(f"verify must be a manifest path, not {type(verify).__name__}")
    text = os.fsdecode(verify)
    if not text:
        raise ValueError("verify is empty")
    return text


def _dtype(dtype) -> str:
    if dtype is None:
        return ""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def _mode(direct, mode) -> str:
    """The read mode: MODE if given ("auto", "buffered" or "direct"), else
    "direct" with DIRECT=True, else "auto"."""
    if not isinstance(direct, bool):
        raise TypeError(f"direct must be a bool, not {type(direct).__name__}")
    if mode is None:
        return "direct" if direct else "auto"
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if direct and mode != "direct":
        raise ValueError(f"direct=True contradicts mode={mode!r}")
    return mode


READ_STRATEGIES = ("auto", "exact", "staged", "mixed", "mapped")


def _read_strategy(value) -> str:
    """read_strategy= as one of READ_STRATEGIES; None gives "auto"."""
    if value is None:
        return "auto"
    if not isinstance(value, str):
        raise TypeError(f"read_strategy must be a str, not {type(value).__name__}")
    if value not in READ_STRATEGIES:
        raise ValueError(f"read_strategy must be one of {READ_STRATEGIES}, got {value!r}")
    return value


def _max_over_read(value) -> float:
    """max_over_read= as a float >= 1; None gives 0 (the library's default)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"max_over_read must be a number, not {type(value).__name__}")
    if not value >= 1:
        raise ValueError(f"max_over_read must be at least 1, got {value}")
    return float(value)


def check_progress(progress):
    """PROGRESS must be None, a bool (True: a bar or a stderr line) or a callable."""
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise TypeError(f"progress must be a bool or callable, not {type(progress).__name__}")


def _device(device, framework) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, not {type(device).__name__}")
    match = re.fullmatch(r"cpu|cuda(?::(\d{1,9}))?", device)
    if match is None:
        raise ValueError(f'device must be "cpu", "cuda" or "cuda:N", got {device!r}')
    if device == "cpu":
        return device
    if framework != "torch":
        raise ValueError(f'device={device!r} needs framework="torch" (numpy arrays live in host memory)')
    return f"cuda:{int(match.group(1) or 0)}"


def _buffer(name, buf):
    """(pointer, bytes, device) of a destination buffer: a torch tensor (its
    device), an object with __cuda_array_interface__ (cuda, its .device.index
    or 0) or a numpy array / __array_interface__ object (cpu). It must be
    C-contiguous and writeable."""
    if hasattr(buf, "data_ptr") and hasattr(buf, "element_size"):  # torch
        if not buf.is_contiguous():
            raise ValueError(f"load_into: {name!r} is not contiguous")
        device = "cpu" if buf.device.type == "cpu" else f"cuda:{buf.device.index or 0}"
        if buf.device.type not in ("cpu", "cuda"):
            raise ValueError(f"load_into: {name!r} is on {buf.device}, not cpu or cuda")
        return buf.data_ptr(), buf.numel() * buf.element_size(), device
    for attr, device in (("__cuda_array_interface__", None), ("__array_interface__", "cpu")):
        face = getattr(buf, attr, None)
        if face is None:
            continue
        ptr, readonly = face["data"]
        if readonly:
            raise ValueError(f"load_into: {name!r} is read-only")
        itemsize = int(face["typestr"][2:])
        count = 1
        for n in face["shape"]:
            count *= int(n)
        strides = face.get("strides")
        if strides is not None:
            want, step = [], itemsize
            for n in reversed(face["shape"]):
                want.insert(0, step)
                step *= int(n)
            if count > 0 and tuple(strides) != tuple(want):
                raise ValueError(f"load_into: {name!r} is not C-contiguous")
        if device is None:
            index = getattr(getattr(buf, "device", None), "index", None)
            device = f"cuda:{index or 0}"
        return ptr, count * itemsize, device
    raise TypeError(f"load_into: {name!r} is a {type(buf).__name__}: expected a torch tensor, "
                    "a numpy array or a __cuda_array_interface__ object")


def destinations(tensors):
    """(names, pointers, sizes, device) of load_into's TENSORS (name -> buffer),
    all on one device."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict name -> buffer, not {type(tensors).__name__}")
    names, ptrs, sizes, devices = [], [], [], set()
    for name, buf in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, not {type(name).__name__}")
        ptr, size, device = _buffer(name, buf)
        names.append(name)
        ptrs.append(ptr)
        sizes.append(size)
        devices.add(device)
    if len(devices) > 1:
        raise ValueError(f"load_into: buffers on several devices: {sorted(devices)}")
    return names, ptrs, sizes, devices.pop() if devices else "cpu"


def load_request(*, rank, world, plan, select, threads, direct, framework, progress,
                 mode=None, max_over_read=None, device="cpu", verify=None,
                 dtype=None, read_strategy=None, gds=False) -> Request:
    """The checked arguments of a load."""
    if not isinstance(gds, bool):
        raise TypeError(f"gds must be a bool, got {type(gds).__name__}")
    plan = _plan(plan)
    rank, world = _world_and_rank(rank, world, plan, every_rank_allowed=False)
    mode = _mode(direct, mode)
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    check_progress(progress)
    return Request(_globs(select), _threads(threads), mode, rank, world, plan, framework,
                   progress, _max_over_read(max_over_read), _read_strategy(read_strategy),
                   _device(device, framework), _verify(verify), _dtype(dtype), gds)


def plan_request(*, rank, world, plan, select, threads, direct, mode=None,
                 max_over_read=None, read_strategy=None) -> Request:
    """The checked arguments of a plan; rank None means every rank."""
    plan = _plan(plan)
    rank, world = _world_and_rank(rank, world, plan, every_rank_allowed=True)
    mode = _mode(direct, mode)
    return Request(_globs(select), _threads(threads), mode, rank, world, plan,
                   max_over_read=_max_over_read(max_over_read),
                   read_strategy=_read_strategy(read_strategy))
