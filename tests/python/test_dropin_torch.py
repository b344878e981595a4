"""The safetensors drop-in surface with torch (issue 26): save / save_file /
load against the numpy writer and the files' bytes, the refusals of
save_file, shared storage (the private helpers, save_model writing tied
weights once, load_model reporting them neither missing nor unexpected),
backend= and the exception types. Skipped without torch."""
import numpy as np
import pytest

import shardload
import shardload.numpy as snp

torch = pytest.importorskip("torch")
import shardload.torch as st  # noqa: E402


def sample():
    gen = torch.Generator().manual_seed(26)
    return {"w": torch.randn((3, 4), generator=gen), "h": torch.randn((2, 2)).half(),
            "bf": torch.randn((2, 3)).bfloat16(), "m": torch.tensor([True, False]),
            "c": torch.complex(torch.tensor([1.0, 0.5]), torch.tensor([-1.0, 2.0])),
            "i": torch.arange(5, dtype=torch.int64), "z": torch.zeros((2, 0)),
            "s": torch.tensor(7.5)}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_save_matches_numpy_writer_and_roundtrips(tmp_path):
    tensors = sample()
    plain = {k: v for k, v in tensors.items() if k != "bf"}
    assert st.save(plain) == snp.save({k: v.numpy() for k, v in plain.items()})
    data = st.save(tensors, metadata={"format": "pt"})
    path = tmp_path / "t.safetensors"
    st.save_file(tensors, path, metadata={"format": "pt"})
    assert path.read_bytes() == data
    for loaded in (st.load(data), st.load_file(path), st.load_file(str(path), backend="pread")):
        assert sorted(loaded) == sorted(tensors)
        for name, tensor in tensors.items():
            assert same(loaded[name], tensor), name
    bf = st.load(data)["bf"]
    assert bf.view(torch.int16).numpy().tobytes() == tensors["bf"].view(torch.int16).numpy().tobytes()


def test_save_refusals(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="Expected a dict"):
        st.save_file("nope", path)
    with pytest.raises(ValueError, match="Key `t` is invalid"):
        st.save_file({"t": {"a": 1}}, path)
    with pytest.raises(ValueError, match="sparse"):
        st.save_file({"t": torch.sparse_coo_tensor(size=(2, 3))}, path)
    with pytest.raises(ValueError, match="contiguous"):
        st.save_file({"t": torch.arange(6.0).reshape(2, 3)[:, 1]}, path)
    base = torch.arange(6.0).reshape(2, 3)
    for other in (base[:1], base[1:]):
        with pytest.raises(RuntimeError, match="share memory"):
            st.save_file({"A": base, "B": other}, path)
    with pytest.raises(RuntimeError, match="meta"):
        st.save_file({"t": torch.zeros(2, device="meta")}, path)
    st.save_file({"top": base[:1], "bottom": base[1:]}, path)  # disjoint views are fine
    loaded = st.load_file(path)
    assert same(loaded["top"], base[:1]) and same(loaded["bottom"], base[1:])
    assert not path.with_name("x.safetensors.tmp").exists()


def test_shared_helpers():
    a = torch.zeros(4)
    assert st._find_shared_tensors({"B": a[:2], "C": a[2:]}) == [{"B"}, {"C"}]
    assert st._find_shared_tensors({"B": a[:2], "C": a[1:]}) == [{"B", "C"}]
    assert st._find_shared_tensors({"B": a[:2], "C": a[2:], "D": a[:1]}) == [{"B", "D"}, {"C"}]
    meta = torch.zeros((2, 2), device="meta")
    assert st._find_shared_tensors({"M": meta, "N": meta[:1]}) == []
    assert st._is_complete(a) and not st._is_complete(a[:2]) and not st._is_complete(a[::2])
    b = torch.zeros(16)
    assert st._end_ptr(b[::4]) - b.data_ptr() == 4 * 4 * 3 + 4
    assert st.storage_ptr(a[1:]) == a.data_ptr() and st.storage_size(a[1:]) == 16
    square = torch.zeros((3, 3))
    assert st._remove_duplicate_names({"A": square, "B": square[:1], "C": square}) == \
        {"A": ["B", "C"]}
    with pytest.raises(RuntimeError):
        st._remove_duplicate_names({"B": square[:1]})


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = self.a


class Untied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)


def test_save_model_writes_tied_weights_once(tmp_path):
    path = str(tmp_path / "m.safetensors")
    model = Tied()
    st.save_model(model, path, metadata={"format": "pt"})
    with shardload.safe_open(path, framework="pt") as f:
        assert f.keys() == ["a.bias", "a.weight"]
        assert f.metadata() == {"format": "pt", "b.bias": "a.bias", "b.weight": "a.weight"}
    other = Tied()
    assert st.load_model(other, path, backend="pread") == ([], [])
    for name, tensor in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "b.bias", "b.weight"'):
        st.load_model(Untied(), path)
    assert st.load_model(Untied(), path, strict=False) == (["b.bias", "b.weight"], [])
    st.save_model(Untied(), path)
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "b.bias", '
                                           '"b.weight"'):
        st.load_model(Tied(), path)


def test_save_model_non_contiguous(tmp_path):
    model = torch.nn.Linear(4, 4)
    model.weight = torch.nn.Parameter(torch.randn(4, 4).t())
    path = str(tmp_path / "nc.safetensors")
    with pytest.raises(ValueError, match="force_contiguous=True"):
        st.save_model(model, path)
    st.save_model(model, path, force_contiguous=True)
    other = torch.nn.Linear(4, 4)
    st.load_model(other, path)
    assert torch.equal(other.weight, model.weight)


def test_safe_open_torch_errors_and_slices(tmp_path):
    path = str(tmp_path / "s.safetensors")
    a = torch.randn((10, 5))
    st.save_file({"a": a}, path)
    with shardload.safe_open(path, framework="pt") as f:
        assert torch.equal(f.get_slice("a")[[]], a[[]]) and f.get_slice("a")[[]].shape == (0, 5)
        assert torch.equal(f.get_slice("a")[2:, -1], a[2:, -1])
        assert torch.equal(f.get_tensors()["a"], a)
        with pytest.raises(KeyError):
            f.get_tensor("b")
    with pytest.raises(shardload.SafetensorError):
        f.get_tensor("a")
    with pytest.raises(FileNotFoundError):
        st.load_file(str(tmp_path / "absent"))
    with pytest.raises(shardload.SafetensorError):
        st.load_file(path, backend="bogus")
