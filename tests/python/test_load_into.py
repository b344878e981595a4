"""shardload.torch.load_into: reads into a module's existing parameters and
buffers (or a dict of tensors) in place. Checked against the numpy oracle:
data pointers kept, values byte-exact (every dtype torch has), strict and
non-strict key handling, key_map, tied weights, and every refusal (shape,
dtype, contiguity, overlap) raised before anything is read; a tensor-parallel
rank's slices under the Hugging Face plan."""
import os

import numpy as np
import pytest

import safetensors_oracle as oracle

torch = pytest.importorskip("torch")
import shardload.torch as st  # noqa: E402
from shardload import _torch  # noqa: E402


def _as_bytes(tensor):
    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.proj = torch.nn.Linear(4, 6)
        self.head = torch.nn.Linear(6, 10, bias=False)
        self.register_buffer("scale", torch.zeros(6, dtype=torch.float64))


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    """Tiny's tensors (random) plus one extra, in a two-shard checkpoint."""
    rng = np.random.default_rng(3)
    shapes = {"embed.weight": ("F32", (10, 4)), "proj.weight": ("F32", (6, 4)),
              "proj.bias": ("F32", (6,)), "head.weight": ("F32", (10, 6)),
              "scale": ("F64", (6,)), "extra.table": ("I32", (3,))}
    tensors = {n: (d, s, rng.bytes(oracle.nbytes(d, s))) for n, (d, s) in shapes.items()}
    names = sorted(tensors)
    oracle.write_index(str(tmp_path), {
        "model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:3]},
        "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[3:]},
    })
    return str(tmp_path), {n: raw for n, (_, _, raw) in tensors.items()}


def test_module_keeps_pointers_and_gets_exact_bytes(tiny_checkpoint):
    path, raw = tiny_checkpoint
    model = Tiny()
    pointers = {k: v.data_ptr() for k, v in model.state_dict().items()}
    result = st.load_into(model, path, strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys == ["extra.table"]
    for key, tensor in model.state_dict().items():
        assert tensor.data_ptr() == pointers[key], key
        assert _as_bytes(tensor) == raw[key], key
    assert isinstance(model.proj.weight, torch.nn.Parameter)


def test_strict_refuses_unexpected_and_missing_before_reading(tiny_checkpoint):
    path, _ = tiny_checkpoint
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r'Unexpected key.*"extra.table"'):
        st.load_into(model, path)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), f"{key} was written"

    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    state["not.there"] = torch.zeros(2)
    with pytest.raises(RuntimeError, match=r'Missing key.*"not.there"'):
        st.load_into(state, path, key_map=lambda n: None if n == "extra.table" else n)
    result = st.load_into(state, path, strict=False)
    assert result.missing_keys == ["not.there"]
    assert result.unexpected_keys == ["extra.table"]


def test_key_map_renames(tiny_checkpoint):
    path, raw = tiny_checkpoint
    state = {"model." + k: torch.zeros(v.shape, dtype=v.dtype)
             for k, v in Tiny().state_dict().items()}
    result = st.load_into(state, path, strict=False, key_map=lambda n: "model." + n)
    # unexpected keys are named as the checkpoint names them
    assert result.missing_keys == [] and result.unexpected_keys == ["extra.table"]
    assert _as_bytes(state["model.proj.bias"]) == raw["proj.bias"]
    table = {"extra.table": None}
    state2 = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in Tiny().state_dict().items()}
    assert st.load_into(state2, path, key_map=table) == ([], [])


@pytest.mark.parametrize("change", ["shape", "dtype", "noncontiguous", "overlap"])
def test_refusals_come_before_any_read(tiny_checkpoint, change):
    path, _ = tiny_checkpoint
    model = Tiny()
    state = {k: torch.full(v.shape, 7, dtype=v.dtype) for k, v in model.state_dict().items()}
    if change == "shape":
        state["proj.weight"] = torch.full((4, 6), 7.0)
        match = r'size mismatch for "proj.weight".*\[6, 4\].*\[4, 6\]'
    elif change == "dtype":
        state["proj.bias"] = torch.full((6,), 7, dtype=torch.float16)
        match = r'dtype mismatch for "proj.bias": the checkpoint\'s is F32'
    elif change == "noncontiguous":
        state["head.weight"] = torch.full((6, 10), 7.0).t()
        match = r'"head.weight" is not contiguous'
    else:
        big = torch.full((16,), 7.0)
        state["proj.bias"] = big[0:6]
        state["scale"] = big.view(torch.float64)[1:7]  # bytes 8..56 of big: overlaps
        match = r"overlap in memory"
    before = {k: _as_bytes(v) for k, v in state.items()}
    with pytest.raises(RuntimeError, match=match):
        st.load_into(state, path, strict=False)
    for key, tensor in state.items():  # nothing was read into any tensor
        assert _as_bytes(tensor) == before[key], key


def test_tied_weights_are_read_once(tmp_path):
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    oracle.write_file(str(tmp_path / "m.safetensors"), {
        "a.weight": ("F32", (3, 4), weight.tobytes()),
        "b.weight": ("F32", (3, 4), weight.tobytes())})
    shared = torch.zeros(3, 4)
    state = {"a.weight": shared, "b.weight": shared}
    assert st.load_into(state, str(tmp_path / "m.safetensors")) == ([], [])
    assert np.array_equal(shared.numpy(), weight)


def test_tied_weights_that_differ_in_the_checkpoint_are_refused(tmp_path):
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    other = weight.copy()
    other[1, 2] = -1.0
    oracle.write_file(str(tmp_path / "m.safetensors"), {
        "a.weight": ("F32", (3, 4), weight.tobytes()),
        "b.weight": ("F32", (3, 4), other.tobytes())})
    shared = torch.zeros(3, 4)
    state = {"a.weight": shared, "b.weight": shared}
    with pytest.raises(RuntimeError) as info:
        st.load_into(state, str(tmp_path / "m.safetensors"))
    message = str(info.value)
    assert '"a.weight" and "b.weight" are tied' in message and "differ" in message
    assert "nothing was read" in message
    assert not shared.any()  # the model's storage was not written


def test_every_torch_dtype_byte_exact(dtypes_checkpoint):
    entries = oracle.read_dir(dtypes_checkpoint)
    state = {}
    for name, entry in entries.items():
        dtype = _torch.torch_dtype(entry["dtype"])
        if dtype is not None:
            state[name] = torch.empty(entry["shape"], dtype=dtype)
    result = st.load_into(state, dtypes_checkpoint, strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == sorted(set(entries) - set(state))
    for name, tensor in state.items():
        assert _as_bytes(tensor) == entries[name]["raw"], name


@pytest.mark.parametrize("world", [2, 4])
def test_tensor_parallel_rank_slices(llama, world):
    directory, config = llama
    full = {n: oracle.view(e) for n, e in oracle.read_dir(directory).items()}
    for rank in range(world):
        plan = shardload.open(directory).plan(rank=rank, world=world, plan="hf")
        state = {name: torch.empty(t.shape, dtype=_torch.torch_dtype(t.dtype))
                 for name, t in plan.tensors.items()}
        pointers = {k: v.data_ptr() for k, v in state.items()}
        assert st.load_into(state, directory, rank=rank, world=world, plan="hf") == ([], [])
        for name, tensor in state.items():
            want = oracle.hf_slice(name, full[name], config, world, rank)
            assert tensor.data_ptr() == pointers[name]
            assert _as_bytes(tensor) == np.ascontiguousarray(want).tobytes(), (name, rank)
    # A full-size tensor for a rank-sliced one is refused, naming the local shape.
    state = {name: torch.empty(a.shape, dtype=torch.bfloat16) for name, a in full.items()}
    with pytest.raises(RuntimeError, match="size mismatch"):
        st.load_into(state, directory, rank=0, world=world, plan="hf")


def test_argument_errors(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(TypeError, match="nn.Module or a dict"):
        st.load_into([1, 2], path)
    with pytest.raises(TypeError, match="not a tensor"):
        st.load_into({"proj.bias": 3}, path)
    with pytest.raises(TypeError, match="key_map"):
        st.load_into({}, path, key_map=3)
    with pytest.raises(ValueError, match="needs rank"):
        st.load_into({}, path, world=2, plan="hf")


import shardload  # noqa: E402  (used by the tensor-parallel test)
