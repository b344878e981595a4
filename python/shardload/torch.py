"""shardload.torch: safetensors.torch's load, load_file, save, save_file,
load_model and save_model (tied weights written once), and load_into, which reads
a checkpoint straight into an existing module's parameters and buffers (or a
state dict's tensors), whole or one tensor-parallel rank's slices, with no
second copy. Imported only on demand (torch is optional).
Thread-compatible: a load_into call must not run while others use the
module's tensors."""
import collections

import torch as _torch_module

from . import _args, _cooperate, _progress, _serialize, _shardload
from ._checkpoint import open as _open
from ._load import run as _run
from ._safe_open import backend_mode as _backend_mode, open_checkpoint as _open_checkpoint
from ._shared import (_end_ptr, _find_shared_tensors, _is_complete,  # noqa: F401 (safetensors'
                      _remove_duplicate_names, storage_ptr, storage_size)  # private helpers)
from ._torch import torch_dtype as _torch_dtype

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def load_file(filename, device="cpu", *, backend="mmap"):
    """Loads every tensor of FILENAME (a .safetensors file, an index, a
    directory or a Hugging Face snapshot) as a dict name -> torch tensor on
    DEVICE. On the CPU the tensors share one read-only-in-spirit buffer that
    shardload allocated (zero-copy). BACKEND: as safe_open."""
    request = _args.load_request(rank=None, world=None, plan=None, select=None, threads=None,
                                 direct=False, framework="torch", progress=None,
                                 mode=_backend_mode(backend))
    tensors = dict(_run(_open_checkpoint(filename)._handle, request))
    target = _torch_module.device(f"cuda:{device}" if isinstance(device, int) else device)
    if target.type != "cpu":
        tensors = {name: t.to(target) for name, t in tensors.items()}
    return tensors


def load(data):
    """The tensors of the safetensors file held in DATA (bytes-like), as a
    dict name -> new CPU tensor (each tensor's bytes copied once), validated
    as load_file validates a file."""
    return _serialize.load(data, "pt")


def _specs(tensors):
    """name -> TensorSpec over each tensor's bytes, and the CPU tensors they
    point into (the caller keeps them alive). Refuses what safetensors
    refuses: non-tensors, sparse, non-contiguous or overlapping tensors."""
    if not isinstance(tensors, dict):
        raise ValueError(f"Expected a dict of [str, torch.Tensor] but received {type(tensors)}")
    for name, tensor in tensors.items():
        if not isinstance(tensor, _torch_module.Tensor):
            raise ValueError(f"Key `{name}` is invalid, expected torch.Tensor but received "
                             f"{type(tensor)}")
    sparse = [name for name, t in tensors.items() if t.layout != _torch_module.strided]
    if sparse:
        raise ValueError(f"You are trying to save a sparse tensors: `{sparse}` which this library "
                         "does not support. You can make it a dense tensor before saving with "
                         "`.to_dense()` but be aware this might make a much larger file than "
                         "needed.")
    shared = [sorted(group) for group in _find_shared_tensors(tensors) if len(group) > 1]
    if shared:
        raise RuntimeError(f"tensors share memory: {shared}; a file holds each tensor's own "
                           "bytes, so save a .clone() of all but one of each group, or use "
                           "shardload.torch.save_model, which writes tied weights once")
    loose = [name for name, t in tensors.items() if not t.is_contiguous()]
    if loose:
        raise ValueError(f"tensors {loose} are not contiguous: call .contiguous() on them "
                         "before saving")
    cpu = {name: t.to("cpu") for name, t in tensors.items()}
    specs = {name: _serialize.TensorSpec(dtype=str(t.dtype).rsplit(".", 1)[-1],
                                         shape=tuple(t.shape), data_ptr=t.data_ptr(),
                                         data_len=t.nelement() * t.element_size())
             for name, t in cpu.items()}
    return specs, cpu


def save(tensors, metadata=None):
    """TENSORS (name -> torch tensor, dense, contiguous, not sharing memory)
    and METADATA (str -> str) as the bytes of a safetensors file."""
    specs, _alive = _specs(tensors)
    return _serialize.serialize(specs, metadata=metadata)


def save_file(tensors, filename, metadata=None):
    """Writes TENSORS and METADATA to FILENAME (str or os.PathLike)
    atomically, with the reference writer's layout."""
    specs, _alive = _specs(tensors)
    _serialize.serialize_file(specs, filename, metadata=metadata)


def save_model(model, filename, metadata=None, force_contiguous=False):
    """Saves MODEL's state_dict() to FILENAME; of tensors that share memory
    (tied weights) one name is written and each other is recorded in the
    metadata as `other name -> written name`. FORCE_CONTIGUOUS: save a
    contiguous copy of non-contiguous tensors instead of refusing them."""
    state_dict = model.state_dict()
    for kept, removed in _remove_duplicate_names(
            state_dict, discard_names=getattr(model, "_tied_weights_keys", None) or ()).items():
        for name in removed:
            metadata = dict(metadata or {})
            metadata[name] = kept
            del state_dict[name]
    if force_contiguous:
        state_dict = {name: t.contiguous() for name, t in state_dict.items()}
    try:
        save_file(state_dict, filename, metadata=metadata)
    except ValueError as error:
        raise ValueError(f"{error}; or use save_model(..., force_contiguous=True), which "
                         "saves contiguous copies") from None


def load_model(model, filename, strict=True, device="cpu", *, backend="mmap"):
    """Loads FILENAME into MODEL (load_state_dict). Names that share memory
    in the model (tied weights) need only one of them in the file: the others
    are neither missing nor unexpected; both in the file is unexpected.
    STRICT: missing or unexpected keys raise RuntimeError (else returned).
    Returns (missing keys, unexpected keys), sorted lists."""
    state_dict = load_file(filename, device=device, backend=backend)
    aliases = _remove_duplicate_names(model.state_dict(), preferred_names=state_dict.keys())
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = set(missing), set(unexpected)
    for removed in aliases.values():
        missing.difference_update(removed)
        unexpected.update(name for name in removed if name in state_dict)
    missing, unexpected = sorted(missing), sorted(unexpected)
    if strict and (missing or unexpected):
        problems = []
        if missing:
            problems.append("Missing key(s) in state_dict: "
                            + ", ".join(f'"{k}"' for k in missing))
        if unexpected:
            problems.append("Unexpected key(s) in state_dict: "
                            + ", ".join(f'"{k}"' for k in unexpected))
        raise RuntimeError(f"Error(s) in loading state_dict for {type(model).__name__}:\n\t"
                           + "\n\t".join(problems))
    return missing, unexpected


def load_into(module_or_state_dict, path, *, rank=None, world=None, plan=None, strict=True,
              key_map=None, threads=None, direct=False, progress=None, group=None,
              cooperate=None, staging=None, peer_timeout=None):
    """Reads the checkpoint at PATH into the existing tensors of
    MODULE_OR_STATE_DICT (an nn.Module: its state_dict() entries, parameters
    and persistent buffers; or a dict name -> tensor), in place: each
    tensor's storage and data_ptr() stay, no second copy is made (memory
    beyond the model: the loader's staging only).

    rank, world, plan: as shardload.load(); the tensors must then have this
    rank's local shapes.
    strict: as load_state_dict; missing keys (model tensors the checkpoint
      lacks, or that this rank does not load) and unexpected keys (checkpoint
      tensors the model lacks) raise RuntimeError before anything is read.
    key_map: a dict or a callable: checkpoint name -> model key (None: skip
      that checkpoint tensor); names a dict does not hold keep their name.
    threads, direct, progress: as shardload.load().
    group, cooperate, staging, peer_timeout: as shardload.load(): under
      torchrun (rank="env") or with group=, the node's ranks read each byte
      once between them; every rank must then make the same call.

    Names, shapes, dtypes, contiguity, device and overlap are all checked
    before any read; a mismatch raises RuntimeError naming every problem.
    Tied tensors (model keys sharing one storage) whose checkpoint tensors
    differ are refused the same way (torch's load_state_dict would keep the
    last one copied): their checkpoint tensors are first read into scratch
    memory and compared.
    Returns IncompatibleKeys(missing_keys, unexpected_keys) (sorted lists).
    Ctrl-C stops the read (KeyboardInterrupt); the tensors' bytes are then
    unspecified."""
    rank, world, coop = _cooperate.checked(group=group, rank=rank, world=world,
                                           cooperate=cooperate, staging=staging,
                                           peer_timeout=peer_timeout)
    request = _args.load_request(rank=rank, world=world, plan=plan, select=None,
                                 threads=threads, direct=direct, framework="torch",
                                 progress=progress)
    targets = _targets(module_or_state_dict)
    checkpoint = _open(path)
    available = _available(checkpoint, request)  # name -> (dtype, local shape)
    mapping = _map_keys(available, key_map)      # model key -> checkpoint name
    missing = sorted(k for k in targets if k not in mapping)
    unexpected = sorted(mapping[k] for k in mapping if k not in targets)
    problems = []
    if strict:
        problems += [f'Missing key(s) in the checkpoint: "{k}"' for k in missing]
        problems += [f'Unexpected key(s) in the checkpoint: "{n}"' for n in unexpected]
    chosen = [(key, mapping[key], targets[key]) for key in sorted(targets) if key in mapping]
    problems += _mismatches(chosen, available)
    device = _device(chosen, problems)
    destinations = _destinations(chosen, problems)
    if not problems:
        problems += _tied_differences(checkpoint, request, chosen)
    if problems:
        raise RuntimeError(f"shardload.torch.load_into({checkpoint.path!r}): "
                           f"{len(problems)} problem(s), nothing was read:\n\t"
                           + "\n\t".join(problems))
    _read(checkpoint, request, destinations, device, coop.connected())
    return IncompatibleKeys(missing, sorted(unexpected))


def _targets(module_or_state_dict):
    """model key -> tensor whose storage receives the bytes."""
    if isinstance(module_or_state_dict, _torch_module.nn.Module):
        state = module_or_state_dict.state_dict(keep_vars=True)
    elif isinstance(module_or_state_dict, dict):
        state = module_or_state_dict
    else:
        raise TypeError("load_into needs an nn.Module or a dict of tensors, not "
                        f"{type(module_or_state_dict).__name__}")
    for key, value in state.items():
        if not isinstance(value, _torch_module.Tensor):
            raise TypeError(f"{key!r} is a {type(value).__name__}, not a tensor")
    return {key: value.data if isinstance(value, _torch_module.nn.Parameter) else value
            for key, value in state.items()}


def _available(checkpoint, request):
    """checkpoint name -> (dtype, shape) this load gives (local shapes for a
    tensor-parallel rank, from the plan: headers only)."""
    if request.plan is None:
        return {name: (info.dtype, tuple(info.shape)) for name, info in checkpoint.items()}
    plans = _shardload.plan(checkpoint._handle, globs=[], threads=request.threads,
                            mode=request.mode, ranks=[request.rank], world=request.world,
                            **request.plan_kwargs())
    return {t["name"]: (t["dtype"], tuple(t["shape"])) for t in plans[0]["tensors"]}


def _map_keys(available, key_map):
    """model key -> checkpoint name, through KEY_MAP."""
    if key_map is None:
        return {name: name for name in available}
    if isinstance(key_map, dict):
        lookup = lambda name: key_map.get(name, name)  # noqa: E731
    elif callable(key_map):
        lookup = key_map
    else:
        raise TypeError(f"key_map must be a dict or callable, not {type(key_map).__name__}")
    mapping = {}
    for name in available:
        key = lookup(name)
        if key is None:
            continue
        if not isinstance(key, str):
            raise TypeError(f"key_map({name!r}) returned {type(key).__name__}, not str")
        if key in mapping:
            raise ValueError(f"key_map maps both {mapping[key]!r} and {name!r} to {key!r}")
        mapping[key] = name
    return mapping


def _mismatches(chosen, available):
    problems = []
    for key, name, tensor in chosen:
        dtype, shape = available[name]
        where = f'"{key}"' if key == name else f'"{key}" (checkpoint "{name}")'
        expected = _torch_dtype(dtype)
        if tuple(tensor.shape) != shape:
            problems.append(f"size mismatch for {where}: the checkpoint's is "
                            f"{list(shape)}, the model's {list(tensor.shape)}")
        elif expected is None or tensor.dtype != expected:
            problems.append(f"dtype mismatch for {where}: the checkpoint's is {dtype}, "
                            f"the model's {tensor.dtype}")
        elif tensor.device.type not in ("cpu", "cuda"):
            problems.append(f"{where} is on {tensor.device}: load_into reads into CPU "
                            "or CUDA tensors only")
        elif not tensor.is_contiguous():
            problems.append(f"{where} is not contiguous: load_into reads into contiguous "
                            "tensors only (call .contiguous() on the parameter first)")
    return problems


def _destinations(chosen, problems):
    """(checkpoint name, address, nbytes) per distinct storage range, in name
    order (the same on every rank: a cooperative load compares the names);
    tensors that share exactly the same bytes (tied weights) are read once;
    other overlaps are PROBLEMS."""
    spans = {}
    for key, name, tensor in chosen:
        nbytes = tensor.numel() * tensor.element_size()
        spans.setdefault((tensor.data_ptr(), nbytes), (key, name))
    ordered = sorted(spans.items())
    for (a, b) in zip(ordered, ordered[1:]):
        (start, size), (key, _) = a
        (next_start, _), (next_key, _) = b
        if size and start + size > next_start:
            problems.append(f'"{key}" and "{next_key}" overlap in memory')
    return sorted((name, address, nbytes) for (address, nbytes), (_, name) in ordered)


def _tied_differences(checkpoint, request, chosen):
    """Problems for tied tensors whose checkpoint tensors differ: each storage
    range several chosen keys share, if they name several checkpoint
    tensors, has those read into CPU scratch memory and compared byte for
    byte (a plain read: not cooperative, no progress)."""
    spans = collections.defaultdict(list)
    for key, name, tensor in chosen:
        spans[(tensor.data_ptr(), tensor.numel() * tensor.element_size())].append((key, name))
    problems = []
    for (_, nbytes), pairs in sorted(spans.items()):
        first = {}  # checkpoint name -> the first key mapped to it
        for key, name in pairs:
            first.setdefault(name, key)
        if len(first) < 2 or nbytes == 0:
            continue
        names = sorted(first)
        scratch = [_torch_module.empty(nbytes, dtype=_torch_module.uint8) for _ in names]
        _shardload.load_into(
            checkpoint._handle, names=names, addresses=[t.data_ptr() for t in scratch],
            sizes=[nbytes] * len(names), threads=request.threads, mode=request.mode,
            rank=request.rank, world=request.world, progress=None, device="cpu",
            **request.plan_kwargs())
        for name, tensor in zip(names[1:], scratch[1:]):
            if not _torch_module.equal(scratch[0], tensor):
                problems.append(f'"{first[names[0]]}" and "{first[name]}" are tied (one '
                                f'storage) but the checkpoint\'s "{names[0]}" and "{name}" '
                                "differ")
    return problems


def _device(chosen, problems):
    """The one device ("cpu" or "cuda:N") every chosen tensor is on; tensors
    on several devices are PROBLEMS."""
    devices = sorted({"cpu" if t.device.type == "cpu" else f"cuda:{t.device.index or 0}"
                      for _, _, t in chosen if t.device.type in ("cpu", "cuda")})
    if len(devices) > 1:
        problems.append(f"tensors on several devices ({', '.join(devices)}): load_into reads "
                        "into one device per call")
    return devices[0] if devices else "cpu"


def _read(checkpoint, request, destinations, device, coop):
    progress = _progress.reporter(request.progress, "shardload.load_into")
    try:
        _shardload.load_into(
            checkpoint._handle, names=[d[0] for d in destinations],
            addresses=[d[1] for d in destinations], sizes=[d[2] for d in destinations],
            threads=request.threads, mode=request.mode, rank=request.rank,
            world=request.world, progress=progress, device=device, **request.plan_kwargs(),
            **coop.kwargs())
    finally:
        _progress.close(progress)
