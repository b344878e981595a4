"""Tensors that share storage, for shardload.torch's save_file, save_model
and load_model (safetensors' rules): which state-dict entries overlap in
memory, and which one name of each group is written (the others are
recorded in the file's metadata as aliases of it).
Thread-safe: pure functions over tensors the caller does not mutate."""
import torch


def storage_ptr(tensor):
    """The address of TENSOR's storage (0 where it has none, e.g. meta)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    try:
        return tensor.storage().data_ptr()
    except (NotImplementedError, RuntimeError):
        return 0


def storage_size(tensor):
    """Bytes of TENSOR's whole storage."""
    try:
        return tensor.untyped_storage().nbytes()
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    try:
        return tensor.storage().size() * tensor.element_size()
    except (NotImplementedError, RuntimeError):
        return tensor.nelement() * tensor.element_size()


def _end_ptr(tensor):
    """One past the address of TENSOR's last element (its first, when empty)."""
    if tensor.nelement() == 0:
        return tensor.data_ptr()
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return tensor.data_ptr() + (last + 1) * tensor.element_size()


def _find_shared_tensors(state_dict):
    """The names of STATE_DICT grouped by overlapping memory: a list of sets,
    in the order of each group's first name; tensors on the meta device or
    without storage are left out."""
    by_storage = {}
    for name, tensor in state_dict.items():
        if tensor.device.type == "meta" or storage_ptr(tensor) == 0 or \
                storage_size(tensor) == 0:
            continue
        key = (tensor.device, storage_ptr(tensor), storage_size(tensor))
        by_storage.setdefault(key, []).append(name)
    groups = []
    for names in by_storage.values():
        groups += _overlapping(names, state_dict)
    order = {name: i for i, name in enumerate(state_dict)}
    return sorted(groups, key=lambda group: min(order[n] for n in group))


def _overlapping(names, state_dict):
    """NAMES (one storage) split into groups of overlapping byte ranges."""
    spans = sorted((state_dict[n].data_ptr(), _end_ptr(state_dict[n]), n) for n in names)
    groups, end = [], None
    for start, stop, name in spans:
        if groups and start < end:
            groups[-1].add(name)
            end = max(end, stop)
        else:
            groups.append({name})
            end = stop
    return groups


def _is_complete(tensor):
    """Whether TENSOR covers its whole storage, from its first byte."""
    return (tensor.data_ptr() == storage_ptr(tensor)
            and tensor.nelement() * tensor.element_size() == storage_size(tensor))


def _remove_duplicate_names(state_dict, *, preferred_names=None, discard_names=None):
    """kept name -> sorted names to drop, for each group of STATE_DICT's
    names that share memory: the kept one covers the whole storage (a
    preferred name first, then one not to discard, then the first in sorted
    order). RuntimeError when no name of a group covers its storage."""
    preferred = set(preferred_names or ())
    discard = set(discard_names or ())
    out = {}
    for group in _find_shared_tensors(state_dict):
        complete = sorted(n for n in group if _is_complete(state_dict[n]))
        if not complete:
            raise RuntimeError(
                f"tensors {sorted(group)} share memory but none of them covers the whole "
                "storage: refusing to save or load them, which could store far more bytes "
                "than the tensors hold (save a .clone() of each instead)")
        keep = ([n for n in complete if n in preferred] or
                [n for n in complete if n not in discard] or complete)[0]
        removed = sorted(group - {keep})
        if removed:
            out[keep] = removed
    return out
