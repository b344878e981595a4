"""shardload.safe_open: safetensors' safe_open (keys, offset_keys, metadata,
get_tensor, get_tensors, get_slice) over any checkpoint shardload opens,
reading only the bytes asked for: get_tensor reads one tensor straight into a
fresh array or tensor, get_tensors all of them in one parallel load,
get_slice(...)[index] only the rows (runs of contiguous bytes) the index
selects, in parallel. Differences from safetensors: docs/python.md.
Thread-compatible: one object per thread, or calls serialized by the caller."""
import itertools
import math
import operator

import numpy

from . import _args, _shardload
from ._checkpoint import open as _open
from ._error import BadArgument, BadIndex, BadIndexType, FileNotFound, TensorMissing

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "pytorch": "pt", "np": "np", "numpy": "np"}
# safetensors' backends -> shardload's read modes (docs/python.md).
BACKEND_MODES = {"mmap": "auto", "pread": "buffered"}


def backend_mode(backend):
    """The read mode of BACKEND ("mmap" or "pread"); BadArgument otherwise."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, not {type(backend).__name__}")
    if backend not in BACKEND_MODES:
        raise BadArgument(f'backend "{backend}" is invalid (expected one of: "mmap", "pread")',
                          code="invalid_argument")
    return BACKEND_MODES[backend]


def open_checkpoint(filename):
    """shardload.open(FILENAME), a missing file reported as safetensors
    words it (FileNotFound, also a FileNotFoundError)."""
    try:
        return _open(filename)
    except FileNotFound as error:
        shown = filename.decode(errors="surrogateescape") if isinstance(filename, bytes) \
            else str(filename.__fspath__() if hasattr(filename, "__fspath__") else filename)
        raise FileNotFound(f"No such file or directory: {shown}", code=error.code,
                           code_number=error.code_number, path=error.path,
                           tensor=error.tensor, detail=error.detail,
                           errno=error.errno) from error


class safe_open:  # noqa: N801 (safetensors' name)
    """safe_open(filename, framework, device="cpu", *, backend="mmap"):
    FILENAME may be a .safetensors file, an index, a directory or a Hugging
    Face snapshot. framework "pt" (torch tensors) or "np" (numpy arrays);
    device: where torch tensors go (numpy: "cpu" only); backend: "mmap" or
    "pread", shardload's read modes "auto" and "buffered". Use as a context
    manager."""

    def __init__(self, filename, framework, device="cpu", *, backend="mmap"):
        if framework not in _FRAMEWORKS:
            raise BadArgument(f"framework {framework!r} is invalid: shardload.safe_open "
                              f"supports {sorted(_FRAMEWORKS)}", code="invalid_argument")
        self._framework = _FRAMEWORKS[framework]
        self._device = _device(self._framework, device)
        self._mode = backend_mode(backend)
        self._checkpoint = open_checkpoint(filename)
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._closed = True
        return False

    def _live(self):
        if self._closed:
            raise BadArgument("File is closed (the safe_open was used after its `with` block)",
                              code="invalid_argument")
        return self._checkpoint

    def keys(self):
        """The tensor names, sorted."""
        return list(self._live())

    def offset_keys(self):
        """The tensor names in file order (shard by shard, by offset)."""
        checkpoint = self._live()
        order = {shard.name: i for i, shard in enumerate(checkpoint.shards)}
        infos = [checkpoint[name] for name in checkpoint]
        return [i.name for i in sorted(infos, key=lambda i: (order[i.shard], i.offset))]

    def metadata(self):
        """The __metadata__ dict (str -> str), or None when absent (or, for a
        sharded checkpoint, when the shards' differ)."""
        return self._live().metadata()

    def get_tensor(self, name):
        """Tensor NAME, whole: a new array (np) or tensor (pt, on `device`)."""
        return self._read([name])[name]

    def get_tensors(self):
        """Every tensor, name -> new array or tensor (in offset_keys()
        order), read in one parallel load."""
        return self._read(self.offset_keys())

    def _read(self, names):
        infos = [self._info(name) for name in names]
        outs = [_empty(self._framework, i.dtype, i.shape, i.nbytes) for i in infos]
        _shardload.load_into(self._checkpoint._handle, names=list(names),
                             addresses=[address for _, address in outs],
                             sizes=[i.nbytes for i in infos], threads=0, mode=self._mode,
                             rank=0, world=1, progress=None, **_args.NO_PLAN.kwargs())
        return {name: self._to_device(out) for name, (out, _) in zip(names, outs)}

    def get_slice(self, name):
        """A lazy view of tensor NAME: get_shape(), get_dtype(), and [index]
        to read part of it."""
        return _Slice(self, self._info(name))

    def _info(self, name):
        checkpoint = self._live()
        if not isinstance(name, str):
            raise TypeError(f"tensor name must be a str, not {type(name).__name__}")
        if name not in checkpoint:
            raise TensorMissing(f"File does not contain tensor {name}",
                                code="tensor_not_found", path=checkpoint.path, tensor=name)
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
                                   address=raw.ctypes.data, mode=self._owner._mode)
        if self._owner._framework == "np":
            box = raw.view(numpy.dtype(typestr)).reshape(plan.box_shape)
            out = box[plan.final_index + (Ellipsis,)]  # an array, also when 0-d
            return out if out.flags.c_contiguous else out.copy()
        box = _torch_view(raw, info.dtype, plan.box_shape)
        return self._owner._to_device(box[plan.final_index].contiguous())


def normalize_index(index, shape):
    """INDEX over SHAPE as one (start, count, step, is_int) per dimension,
    safetensors' get_slice rules: an int (negative counts from the end), a
    slice, or a tuple of them; an empty list is the empty slice 0:0 of the
    first dimension, a non-empty one BadIndexType; a slice's stop past its
    dimension, or a start at or past it, is BadIndex (no clipping), checked
    from the last dimension. Beyond safetensors: one Ellipsis, negative
    slice bounds and positive steps, as numpy takes them."""
    if isinstance(index, list):
        if index:
            raise BadIndexType("Non empty lists are not implemented", code="invalid_argument")
        items = (slice(0, 0),)
    else:
        items = index if isinstance(index, tuple) else (index,)
    items = _expand_ellipsis(items, len(shape))
    parsed = [_pick(item, dim, axis) for axis, (item, dim) in enumerate(zip(items, shape))]
    shown = "[" + ", ".join(p[4] for p in parsed) + "]"
    if len(items) > len(shape):
        raise BadIndex(f"Error during slicing {shown} with shape {list(shape)}: more slicing "
                       "indexes than dimensions in tensor", code="invalid_argument")
    for axis in reversed(range(len(parsed))):
        start, stop, dim = parsed[axis][0], parsed[axis][1], shape[axis]
        if (start >= dim or stop > dim) and not (dim == 0 and stop == 0):
            asked = start if start >= dim else stop - 1
            raise BadIndex(f"Error during slicing {shown} with shape {list(shape)}: index "
                           f"{asked} out of bounds for tensor dimension #{axis} of size {dim}",
                           code="invalid_argument")
    picks = [(start, len(range(start, stop, step)), step, is_int)
             for start, stop, step, is_int, _ in parsed]
    return picks + [(0, dim, 1, False) for dim in shape[len(picks):]]


def _expand_ellipsis(items, ndim):
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis not in items:
        return items
    at = items.index(Ellipsis)
    fill = ndim - (len(items) - 1)
    return items[:at] + (slice(None),) * max(fill, 0) + items[at + 1:]


def _pick(item, dim, axis):
    """(start, stop, step, is_int, shown) of one index item; stop >= start."""
    if isinstance(item, slice):
        step = 1 if item.step is None else _int(item.step)
        if step <= 0:
            raise ValueError(f"dimension {axis}: only positive steps are supported, got {step}")
        start = 0 if item.start is None else _bound(_int(item.start), dim, axis)
        stop = dim if item.stop is None else _bound(_int(item.stop), dim, axis)
        stop = max(stop, start)
        shown = (("" if item.start is None else str(start)) + ":"
                 + ("" if item.stop is None else str(stop)) + ("" if step == 1 else f":{step}"))
        return start, stop, step, False, shown
    if item is None:
        raise ValueError("None (numpy.newaxis) is not supported in get_slice indexing")
    value = _bound(_int(item), dim, axis)
    return value, value + 1, 1, True, str(value)


def _int(item):
    if isinstance(item, bool):
        raise TypeError("a bool is not a valid index")
    try:
        return operator.index(item)
    except TypeError:
        raise TypeError(f"only integers, slices and '...' are valid indices, "
                        f"not {type(item).__name__}") from None


def _bound(value, dim, axis):
    """VALUE with a negative one counted from the end of DIM."""
    if value >= 0:
        return value
    if value + dim < 0:
        raise BadIndex(f"Invalid index {value} for dimension {axis} of size {dim}",
                       code="invalid_argument")
    return value + dim


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
            raise BadArgument(f"device {device!r} is not supported for framework np",
                              code="invalid_argument")
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
