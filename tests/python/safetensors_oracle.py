"""An independent safetensors reader and writer for the Python tests: json,
struct and numpy.frombuffer only, never the library under test. It also
states, on its own, what the binding promises about each dtype's numpy view
(docs/python.md) and how a tensor-parallel rank slices a tensor under a
Hugging Face base_model_tp_plan (docs/tp-plan.md)."""
import json
import os
import re
import struct

import numpy as np

# Bits per element of each safetensors dtype.
BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}

# The numpy dtype of each view: the real type, or an unsigned integer of the
# same width (one byte for the packed sub-byte types).
NUMPY_VIEW = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
    "BF16": "<u2", "I32": "<i4", "U32": "<u4", "F32": "<f4", "C64": "<c8", "F64": "<f8",
    "I64": "<i8", "U64": "<u8",
}


def numpy_view_dtype(dtype):
    return np.dtype(NUMPY_VIEW.get(dtype, "u1"))


def view_shape(dtype, shape, nbytes):
    """Sub-byte types: the last dimension in bytes when whole, else flat bytes."""
    bits = BITS[dtype]
    if bits >= 8:
        return tuple(shape)
    if shape and shape[-1] * bits % 8 == 0:
        return tuple(shape[:-1]) + (shape[-1] * bits // 8,)
    return (nbytes,)


def nbytes(dtype, shape):
    count = 1
    for d in shape:
        count *= d
    return count * BITS[dtype] // 8


def write_file(path, tensors, metadata=None):
    """TENSORS: ordered {name: (dtype, shape, raw bytes)}; data in that order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        assert len(raw) == nbytes(dtype, shape), name
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, raw in tensors.values():
            f.write(raw)


def write_index(directory, shards, name="model.safetensors.index.json", extra=None):
    """SHARDS: {file name: tensors dict}; writes each shard and the index
    ({"metadata": {"total_size"}, "weight_map"}; EXTRA adds weight_map entries)."""
    weight_map, total = {}, 0
    for file_name, tensors in shards.items():
        write_file(os.path.join(directory, file_name), tensors, {"format": "pt"})
        for tensor, (_, _, raw) in tensors.items():
            weight_map[tensor] = file_name
            total += len(raw)
    weight_map.update(extra or {})
    with open(os.path.join(directory, name), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)


def read_file(path):
    """({name: {"dtype", "shape", "offset" (absolute), "raw"}}, metadata, header length)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    metadata = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = {"dtype": info["dtype"], "shape": tuple(info["shape"]),
                     "offset": 8 + n + begin, "raw": blob[8 + n + begin:8 + n + end],
                     "shard": os.path.basename(path)}
    return out, metadata, n


def read_dir(directory):
    """Every tensor of every .safetensors file in DIRECTORY."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            out.update(read_file(os.path.join(directory, name))[0])
    return out


def view(entry):
    """The numpy view the binding promises for a read_file entry."""
    dtype = entry["dtype"]
    shape = view_shape(dtype, entry["shape"], len(entry["raw"]))
    return np.frombuffer(entry["raw"], dtype=numpy_view_dtype(dtype)).reshape(shape)


# --- tensor parallel: what rank r of W gets under config's base_model_tp_plan ---

def _chunk(units, world, rank):
    """torch.chunk: ceil(units / world) each; the tail short or empty."""
    c = -(-units // world)
    return min(rank * c, units), min((rank + 1) * c, units)


def _hf_style(plan, name):
    """The style of the first key (a module path, `*` for a layer number)
    that NAME's module matches, or None (replicated)."""
    module = name.rsplit(".", 1)[0]
    for key, style in plan.items():
        pattern = r"(.*\.)?" + re.escape(key).replace(r"\*", r"\d+")
        if re.fullmatch(pattern, module) or re.fullmatch(pattern, name):
            return style
    return None


def hf_slice(name, full, config, world, rank):
    """Rank RANK's slice of FULL (a 2-D weight): colwise splits rows, rowwise
    columns; attention projections in whole heads of head_dim, kv heads
    replicated to world / heads ranks each when fewer than the ranks."""
    style = _hf_style(config["base_model_tp_plan"], name)
    if style is None or full.ndim < 2:
        return full
    projection = name.split(".")[-2]
    unit = 1
    units = full.shape[0] if style == "colwise" else full.shape[1]
    if projection in ("q_proj", "o_proj"):
        unit, units = config["head_dim"], config["num_attention_heads"]
    elif projection in ("k_proj", "v_proj"):
        unit, units = config["head_dim"], config["num_key_value_heads"]
        if units < world:
            h = rank // (world // units)
            return full[h * unit:(h + 1) * unit, :]
    a, b = _chunk(units, world, rank)
    if style == "colwise":
        return full[a * unit:b * unit, :]
    assert style == "rowwise", style
    return full[:, a * unit:b * unit]
