"""shardload.safe_open: safetensors' safe_open (keys, metadata, get_tensor,
get_slice) over any checkpoint shardload opens, reading only the bytes
asked for: get_tensor reads one tensor straight into a fresh array or
tensor, get_slice(...)[index] reads only the rows (runs of contiguous bytes)
the index selects, in parallel. Differences from safetensors: docs/python.md.
Thread-compatible: one object per thread, or calls serialized by the caller."""
import itertools
import math
import operator

import numpy

from . import _args, _shardload
from ._checkpoint import open as _open

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "pytorch": "pt", "np": "np", "numpy": "np"}


class safe_open:  # noqa: N801 (safetensors' name)
    """safe_open(filename, framework, device="cpu"): FILENAME may be a
    .safetensors file, an index, a directory or a Hugging Face snapshot.
    framework "pt" (torch tensors) or "np" (numpy arrays); device: where torch
    tensors go (numpy: "cpu" only). Use as a context manager."""

    def __init__(self, filename, framework, device="cpu"):
        if framework not in _FRAMEWORKS:
            raise ValueError(f"framework {framework!r} is invalid: shardload.safe_open "
                             f"supports {sorted(_FRAMEWORKS)}")
        self._framework = _FRAMEWORKS[framework]
        self._device = _device(self._framework, device)
        self._checkpoint = _open(filename)
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._closed = True
        return False

    def _live(self):
        if self._closed:
            raise ValueError("safe_open: the file is closed (used after its `with` block)")
        return self._checkpoint

    def keys(self):
        """The tensor names, sorted."""
        return list(self._live())

    def metadata(self):
        """The __metadata__ dict (str -> str), or None when absent (or, for a
        sharded checkpoint, when the shards' differ)."""
        return self._live().metadata()

    def get_tensor(self, name):
        """Tensor NAME, whole: a new array (np) or tensor (pt, on `device`)."""
        info = self._info(name)
        out, address = _empty(self._framework, info.dtype, info.shape, info.nbytes)
        _shardload.load_into(self._checkpoint._handle, names=[name], addresses=[address],
                             sizes=[info.nbytes], threads=0, mode="auto", rank=0, world=1,
                             progress=None, **_args.NO_PLAN.kwargs())
        return self._to_device(out)

    def get_slice(self, name):
        """A lazy view of tensor NAME: get_shape(), get_dtype(), and [index]
        to read part of it."""
        return _Slice(self, self._info(name))

    def _info(self, name):
        checkpoint = self._live()
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be a str, not {type(name).__name__}")
        if name not in checkpoint:
            raise KeyError(f"{checkpoint.path}: no tensor named {name!r}")
        return checkpoint[name]

    def _to_device(self, out):
        if self._framework == "pt" and self._device is not None:
            return out.to(self._device)
        return out


class _Slice:
    """safetensors' PySafeSlice: basic indexing of one tensor, reading only
    the selected bytes."""

    def __init__(self, owner, info):
        self._owner = owner
        self._info = info

    def get_shape(self):
        return list(self._info.shape)

    def get_dtype(self):
        return self._info.dtype

    def __getitem__(self, index):
        info = self._info
        typestr, _, bits = _shardload.numpy_view(info.dtype, list(info.shape), info.nbytes)
        if bits < 8:
            raise ValueError(f"tensor {info.name!r}: get_slice of packed {info.dtype} "
                             "elements is not supported; use get_tensor")
        picks = normalize_index(index, info.shape)
        plan = SlicePlan(picks, info.shape, bits // 8)
        raw = numpy.empty(plan.nbytes, dtype=numpy.uint8)
        if plan.nbytes:
            checkpoint = self._owner._live()
            shard = _shard_index(checkpoint, info.shard)
            offsets = [info.offset + o for o in plan.offsets]
            _shardload.read_ranges(checkpoint._handle, shard=shard, offsets=offsets,
                                   lengths=[plan.run_bytes] * len(offsets),
                                   address=raw.ctypes.data)
        if self._owner._framework == "np":
            box = raw.view(numpy.dtype(typestr)).reshape(plan.box_shape)
            out = box[plan.final_index + (Ellipsis,)]  # an array, also when 0-d
            return out if out.flags.c_contiguous else out.copy()
        box = _torch_view(raw, info.dtype, plan.box_shape)
        return self._owner._to_device(box[plan.final_index].contiguous())


def normalize_index(index, shape):
    """INDEX (an int, a slice, Ellipsis or a tuple of them) over SHAPE as one
    (start, count, step, is_int) per dimension, numpy's basic-indexing rules;
    steps must be positive. Raises IndexError / TypeError / ValueError."""
    items = index if isinstance(index, tuple) else (index,)
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        items = items[:at] + (slice(None),) * max(fill, 0) + items[at + 1:]
    if len(items) > len(shape):
        raise IndexError(f"too many indices: {len(items)} for a tensor of {len(shape)} "
                         "dimensions")
    items = items + (slice(None),) * (len(shape) - len(items))
    return [_pick(item, dim, axis) for axis, (item, dim) in enumerate(zip(items, shape))]


def _pick(item, dim, axis):
    if isinstance(item, slice):
        start, stop, step = item.indices(dim)
        if step <= 0:
            raise ValueError(f"dimension {axis}: only positive steps are supported, got {step}")
        return start, len(range(start, stop, step)), step, False
    if item is None:
        raise ValueError("None (numpy.newaxis) is not supported in get_slice indexing")
    if isinstance(item, bool):
        raise TypeError("a bool is not a valid index")
    try:
        value = operator.index(item)
    except TypeError:
        raise TypeError(f"only integers, slices and '...' are valid indices, "
                        f"not {type(item).__name__}") from None
    if not -dim <= value < dim:
        raise IndexError(f"index {value} is out of bounds for dimension {axis} of size {dim}")
    return value % dim, 1, 1, True


class SlicePlan:
    """What to read for PICKS (normalize_index) of a C-order tensor of SHAPE
    with ITEMSIZE-byte elements: runs of run_bytes contiguous bytes at
    `offsets` (relative to the tensor's first byte), which back to back form
    an array of box_shape; box[final_index] is the result.

    The last dimension k that is not taken whole is read as the bounding
    range of its picks (one run per pick of the dimensions before k); the
    dimensions after k are whole, so each run is contiguous. Dimensions
    before k are enumerated (their steps skip bytes); dimension k's step is
    applied after the read (final_index)."""

    def __init__(self, picks, shape, itemsize):
        partial = [a for a, (start, count, step, is_int) in enumerate(picks)
                   if is_int or not (start == 0 and count == shape[a] and step == 1)]
        k = partial[-1] if partial else -1
        inner = itemsize * math.prod(shape[k + 1:])
        empty = any(count == 0 for _, count, _, _ in picks)
        if k < 0:  # the whole tensor
            extent, first = 1, 0
            outer = [()]
        else:
            start, count, step, _ = picks[k]
            extent = (count - 1) * step + 1 if count else 0
            first = start
            outer = itertools.product(*(range(s, s + c * st, st)
                                        for s, c, st, _ in picks[:k]))
        strides = [itemsize * math.prod(shape[a + 1:]) for a in range(len(shape))]
        self.run_bytes = 0 if empty else extent * inner
        self.offsets = [] if empty else [
            sum(i * strides[a] for a, i in enumerate(idx)) + first * (inner if k >= 0 else 0)
            for idx in outer]
        self.nbytes = self.run_bytes * len(self.offsets)
        counts = [count for _, count, _, _ in picks]
        if k < 0:
            self.box_shape = tuple(shape)
        else:
            self.box_shape = tuple(counts[:k]) + (extent,) + tuple(shape[k + 1:])
        final = [0 if is_int else slice(None) for _, _, _, is_int in picks]
        if k >= 0 and not picks[k][3]:
            final[k] = slice(None, None, picks[k][2])
        self.final_index = tuple(final)


def _shard_index(checkpoint, shard_name):
    for i, shard in enumerate(checkpoint.shards):
        if shard.name == shard_name:
            return i
    raise RuntimeError(f"shard {shard_name!r} not found")  # not reached: from the same headers


def _device(framework, device):
    """The torch device to move tensors to (None: stay on the CPU)."""
    if framework == "np":
        if device not in ("cpu", None):
            raise ValueError(f"device {device!r} is not supported for framework np")
        return None
    import torch
    target = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    return None if target.type == "cpu" else target


def _empty(framework, dtype, shape, nbytes):
    """A new C-contiguous array (np) or CPU tensor (pt) for a tensor of DTYPE,
    SHAPE and NBYTES bytes, as load() would return it, and its address."""
    if framework == "np":
        typestr, view_shape, _ = _shardload.numpy_view(dtype, list(shape), nbytes)
        out = numpy.empty(view_shape, dtype=numpy.dtype(typestr))
        return out, out.ctypes.data
    import torch
    raw = torch.empty(nbytes, dtype=torch.uint8)
    return _torch_view(raw, dtype, shape), raw.data_ptr()


def _torch_view(raw, dtype, shape):
    """RAW (bytes: a uint8 numpy array or torch tensor) viewed, without a
    copy, as a torch tensor of DTYPE and SHAPE (packed uint8 bytes for the
    dtypes torch lacks, as load(framework="torch") gives them)."""
    import torch
    from . import _torch
    if isinstance(raw, numpy.ndarray):
        raw = torch.from_numpy(raw)
    target = _torch.torch_dtype(dtype)
    if target is None:  # as _torch.to_tensor: packed bytes, or a signed integer
        _, view_shape, bits = _shardload.numpy_view(dtype, list(shape), raw.numel())
        if bits <= 8:
            return raw.view(tuple(view_shape))
        target = {16: torch.int16, 32: torch.int32, 64: torch.int64}[bits]
    if raw.numel() == 0:
        return torch.empty(tuple(shape), dtype=target)
    return raw.view(target).view(tuple(shape))
