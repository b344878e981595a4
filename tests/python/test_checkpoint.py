"""shardload.open: the checkpoint description from the headers (tensors,
shards, metadata, warnings) and per-rank plans, checked against the
independent reader; nothing reads tensor data."""
import json
import os
import shutil
import struct

import pytest

import safetensors_oracle as oracle
import shardload


def test_tensors_match_the_headers(dtypes_checkpoint):
    ckpt = shardload.open(dtypes_checkpoint)
    expected = oracle.read_dir(dtypes_checkpoint)
    assert list(ckpt.keys()) == sorted(expected)
    assert len(ckpt) == len(expected)
    for name, entry in expected.items():
        assert name in ckpt
        info = ckpt[name]
        assert isinstance(info, shardload.TensorInfo)
        assert ckpt.tensor(name) == info
        assert (info.name, info.dtype, info.shape) == (name, entry["dtype"], entry["shape"])
        assert info.shard == entry["shard"]
        assert info.offset == entry["offset"]
        assert info.nbytes == len(entry["raw"])
    assert ckpt.nbytes == sum(len(e["raw"]) for e in expected.values())
    assert "missing" not in ckpt and 3 not in ckpt
    with pytest.raises(KeyError):
        ckpt["missing"]
    with pytest.raises(KeyError):
        ckpt.tensor("missing")


def test_shards_and_metadata(dtypes_checkpoint):
    ckpt = shardload.open(dtypes_checkpoint)
    index = os.path.join(dtypes_checkpoint, "model.safetensors.index.json")
    assert os.path.samefile(ckpt.index_path, index)
    with open(index) as f:
        total = json.load(f)["metadata"]["total_size"]
    assert ckpt.index_metadata() == {"total_size": str(total)}
    assert ckpt.metadata() == {"format": "pt"}
    files = sorted(f for f in os.listdir(dtypes_checkpoint) if f.endswith(".safetensors"))
    assert [s.name for s in ckpt.shards] == files
    expected = oracle.read_dir(dtypes_checkpoint)
    for shard in ckpt.shards:
        _, metadata, header = oracle.read_file(shard.path)
        assert shard.file_size == os.path.getsize(shard.path)
        assert (shard.header_size, shard.data_offset) == (header, 8 + header)
        assert shard.metadata == metadata
        assert shard.num_tensors == sum(e["shard"] == shard.name for e in expected.values())
    assert ckpt.warnings == []


def test_single_file_without_metadata_and_differing_metadata(tmp_path):
    one = {"a": ("F32", (2,), bytes(8))}
    oracle.write_file(str(tmp_path / "plain.safetensors"), one)
    ckpt = shardload.open(tmp_path / "plain.safetensors")
    assert ckpt.index_path is None and ckpt.metadata() is None and ckpt.index_metadata() == {}
    both = tmp_path / "both"
    both.mkdir()
    oracle.write_file(str(both / "x.safetensors"), one, {"format": "pt"})
    oracle.write_file(str(both / "y.safetensors"), {"b": ("U8", (1,), b"\1")}, {"format": "np"})
    ckpt = shardload.open(both)
    assert ckpt.metadata() is None
    assert sorted(s.metadata["format"] for s in ckpt.shards) == ["np", "pt"]


def test_unindexed_tensor_is_a_warning(tmp_path):
    oracle.write_index(str(tmp_path), {"model.safetensors": {"a": ("U8", (2,), b"\1\2")}})
    shard = tmp_path / "model.safetensors"
    oracle.write_file(str(shard), {"a": ("U8", (2,), b"\1\2"), "stray": ("U8", (1,), b"\3")},
                      {"format": "pt"})
    ckpt = shardload.open(tmp_path)
    warnings = ckpt.warnings
    assert [w.code for w in warnings] == ["unindexed_tensor"]
    assert isinstance(warnings[0], shardload.Error)
    assert warnings[0].tensor == "stray" and warnings[0].path.endswith("model.safetensors")


def _zeroed_copy(src, dst):
    shutil.copytree(src, dst)
    for name in os.listdir(dst):
        if name.endswith(".safetensors"):
            path = os.path.join(dst, name)
            with open(path, "r+b") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                f.seek(8 + n)
                f.write(bytes(os.path.getsize(path) - 8 - n))


def test_plan_is_computed_from_headers(llama, tmp_path):
    directory, config = llama
    full = {n: oracle.view(e) for n, e in oracle.read_dir(directory).items()}
    ckpt = shardload.open(directory)
    # Buffered: in the default auto mode, what is read depends on the page cache.
    plans = ckpt.plan(world=4, plan="hf", mode="buffered")
    assert [p.rank for p in plans] == [0, 1, 2, 3]
    for rank, plan in enumerate(plans):
        assert isinstance(plan, shardload.RankPlan) and plan.world == 4
        want = {n: oracle.hf_slice(n, a, config, 4, rank) for n, a in full.items()}
        assert sorted(plan.tensors) == sorted(want)
        for name, tensor in plan.tensors.items():
            assert tensor.shape == want[name].shape, (rank, name)
            assert tensor.nbytes == want[name].nbytes and tensor.dtype == "BF16"
            assert tensor.rule
        total = sum(a.nbytes for a in want.values())
        assert plan.bytes == plan.local_bytes == total
        # Staged reads may read the gaps between rows, up to max_over_read (8).
        assert total <= plan.bytes_read <= 8 * total and plan.read_ops > 0
        exact = ckpt.plan(world=4, rank=rank, plan="hf", mode="buffered", max_over_read=1)
        assert exact.bytes_read == total and exact.read_amplification == 1.0
    assert ckpt.plan(world=4, rank=2, plan="hf", mode="buffered") == plans[2]
    zeroed = str(tmp_path / "zeroed")
    _zeroed_copy(directory, zeroed)
    shutil.copy(os.path.join(directory, "config.json"), zeroed)
    assert shardload.open(zeroed).plan(world=4, plan="hf", mode="buffered") == plans, \
        "plan read tensor data"


def test_plan_without_tensor_parallelism(dtypes_checkpoint):
    ckpt = shardload.open(dtypes_checkpoint)
    plan = ckpt.plan(world=1, mode="buffered")
    assert plan == [ckpt.plan(world=1, rank=0, mode="buffered")]
    assert plan[0].bytes == ckpt.nbytes
    assert {n: t.shape for n, t in plan[0].tensors.items()} == {n: ckpt[n].shape for n in ckpt}
