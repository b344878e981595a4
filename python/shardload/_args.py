"""Checks the arguments of load(), Checkpoint.load() and Checkpoint.plan()
before any file is touched: a wrong type raises TypeError, a wrong value
ValueError. Also turns a plan given as a dict into a temporary file, since
the library reads plans from files."""
import builtins
import contextlib
import json
import operator
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from ._error import Error

MAX_THREADS = 1024      # as `shardload load --threads`
MAX_WORLD = 1 << 20     # as `shardload load --world`
FRAMEWORKS = ("numpy", "torch")
DICT_PLAN = "<plan dict>"  # how errors name a plan given as a dict


@dataclass(frozen=True)
class DictPlan:
    """A plan given as a dict, serialized: FILE_NAME is "plan.json" for our
    format ("tp_plan_version"), else "config.json" (a Hugging Face config)."""
    text: str
    file_name: str


@dataclass(frozen=True)
class Request:
    """A checked load or plan request."""
    globs: List[str]
    threads: int                 # 0: one worker per CPU
    direct: bool
    rank: Optional[int]          # None (plan only): every rank
    world: int
    plan: Any                    # None, a path (bytes) or a DictPlan
    framework: str = "numpy"
    progress: Optional[Callable[[int, int], Any]] = None
    verify: str = ""             # manifest path ("" for none)
    dtype: str = ""              # "F32", "F16", "BF16" ("" for none)

    def rank_info(self):
        """What a tensor-parallel load adds to .stats (None for a plain load)."""
        if self.plan is None:
            return None
        plan = DICT_PLAN if isinstance(self.plan, DictPlan) else os.fsdecode(self.plan)
        return {"rank": self.rank, "world": self.world, "plan": plan}


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
        file_name = "plan.json" if "tp_plan_version" in plan else "config.json"
        return DictPlan(json.dumps(plan), file_name)  # TypeError when not JSON
    if not isinstance(plan, (str, bytes, os.PathLike)):
        raise TypeError("plan must be a path, \"hf\" or a dict, "
                        f"not {type(plan).__name__}")
    encoded = os.fsencode(plan)
    if not encoded:
        raise ValueError('plan is empty: pass a plan file, "hf", a config.json or a dict')
    return encoded


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


def load_request(*, rank, world, plan, select, threads, direct, framework, progress,
                 verify=None, dtype=None) -> Request:
    """The checked arguments of a load."""
    plan = _plan(plan)
    rank, world = _world_and_rank(rank, world, plan, every_rank_allowed=False)
    if not isinstance(direct, bool):
        raise TypeError(f"direct must be a bool, not {type(direct).__name__}")
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    return Request(_globs(select), _threads(threads), direct, rank, world, plan, framework,
                   progress, _verify(verify), _dtype(dtype))


def plan_request(*, rank, world, plan, select, threads, direct) -> Request:
    """The checked arguments of a plan; rank None means every rank."""
    plan = _plan(plan)
    rank, world = _world_and_rank(rank, world, plan, every_rank_allowed=True)
    if not isinstance(direct, bool):
        raise TypeError(f"direct must be a bool, not {type(direct).__name__}")
    return Request(_globs(select), _threads(threads), direct, rank, world, plan)


@contextlib.contextmanager
def plan_file(plan):
    """Yields the plan argument of the C++ call (bytes; b"" for none). A
    DictPlan is written to a temporary file for the duration (the library
    reads plans from files); errors that name that file name DICT_PLAN
    instead."""
    if not isinstance(plan, DictPlan):
        yield plan if plan is not None else b""
        return
    with tempfile.TemporaryDirectory(prefix="shardload-plan-") as directory:
        path = os.path.join(directory, plan.file_name)
        with builtins.open(path, "w", encoding="utf-8") as f:
            f.write(plan.text)
        try:
            yield os.fsencode(path)
        except Error as error:
            if error.path == path:
                error.path = DICT_PLAN
                error.args = (str(error).replace(path, DICT_PLAN),)
            raise
