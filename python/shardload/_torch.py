"""framework="torch": the loaded tensors as torch tensors, zero-copy through
DLPack. Imported only when asked for (torch is optional)."""
import torch
from torch.utils.dlpack import from_dlpack

# safetensors dtype -> the torch dtype's attribute name, used when this torch
# has it (the float8 types need torch >= 2.1, uint16/32/64 torch >= 2.3).
_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
    "F32": "float32", "C64": "complex64", "F64": "float64", "I64": "int64",
    "U64": "uint64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
}


def torch_dtype(dtype):
    """The torch dtype of safetensors DTYPE, or None when this torch has none
    (F4 and F6 always: they come back as packed torch.uint8 bytes)."""
    name = _TORCH_DTYPES.get(dtype)
    return getattr(torch, name, None) if name else None


def _import(memory, name, integer):
    return from_dlpack(memory.dlpack(name, integer=integer))


def to_tensor(memory, name, dtype):
    """Tensor NAME of MEMORY as torch sees it. Its DLPack type is tried
    first; a torch whose DLPack import lacks that type (torch 1.13: bool,
    uint16) gets a plain integer of the same width, viewed (same bits, no
    copy) as the torch dtype. Without a torch dtype, the integer stays:
    uint8 for one-byte types, else int16/32/64 (same bits)."""
    target = torch_dtype(dtype)
    if target is None:
        return _import(memory, name, True)
    try:
        tensor = _import(memory, name, False)
    except (RuntimeError, TypeError, ValueError, BufferError):
        tensor = _import(memory, name, True)
    return tensor if tensor.dtype == target else tensor.view(target)


def tensors(memory, dtypes):
    """name -> torch tensor for every tensor of MEMORY (DTYPES: name -> dtype)."""
    return {name: to_tensor(memory, name, dtype) for name, dtype in dtypes.items()}
