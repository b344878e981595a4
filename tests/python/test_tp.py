"""Tensor-parallel loads: every rank of W = 1, 2, 4 under the checkpoint's
Hugging Face plan equals numpy slices of the full tensors; rank/world from
torchrun's environment; plans given as files, config paths and dicts."""
import json
import os

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload


@pytest.fixture(scope="module")
def full(llama):
    directory, _ = llama
    return {n: oracle.view(e) for n, e in oracle.read_dir(directory).items()}


def check_rank(loaded, full, expect, max_over_read=8):
    assert sorted(loaded) == sorted(full)
    total = 0
    for name, array in loaded.items():
        want = expect(name, full[name])
        assert array.shape == want.shape, (name, array.shape, want.shape)
        assert np.array_equal(array, want), name
        total += want.nbytes
    assert loaded.stats["bytes"] == total
    if loaded.stats["bytes_direct"]:
        return  # auto mode read cold ranges with O_DIRECT: alignment is outside the cap
    if max_over_read == 1:
        assert loaded.stats["bytes_read"] == total, "max_over_read=1: a rank reads exactly its bytes"
    else:
        assert total <= loaded.stats["bytes_read"] <= max_over_read * total


@pytest.mark.parametrize("world", [1, 2, 4])
def test_hf_plan_ranks_match_numpy_slices(llama, full, world):
    directory, config = llama
    sliced_somewhere = False
    for rank in range(world):
        loaded = shardload.load(directory, rank=rank, world=world, plan="hf")
        check_rank(loaded, full,
                   lambda n, a, r=rank: oracle.hf_slice(n, a, config, world, r))
        assert (loaded.stats["rank"], loaded.stats["world"]) == (rank, world)
        assert loaded.stats["plan"] == "hf"
        sliced_somewhere |= any(a.shape != full[n].shape for n, a in loaded.items())
    assert sliced_somewhere == (world > 1)


def test_rank_and_world_from_the_environment(llama, full, monkeypatch):
    directory, config = llama
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    loaded = shardload.load(directory, rank="env", world="env", plan="hf")
    assert (loaded.stats["rank"], loaded.stats["world"]) == (3, 4)
    check_rank(loaded, full, lambda n, a: oracle.hf_slice(n, a, config, 4, 3))
    plan = shardload.open(directory).plan(rank="env", world="env", plan="hf")
    assert (plan.rank, plan.world) == (3, 4)
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ValueError, match="RANK"):
        shardload.load(directory, rank="env", world="env", plan="hf")
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="RANK"):
        shardload.load(directory, rank="env", world=4, plan="hf")
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="below the world size"):
        shardload.load(directory, rank="env", world="env", plan="hf")


def test_config_path_and_config_dict_equal_hf(llama):
    directory, config = llama
    hf = shardload.load(directory, rank=1, world=2, plan="hf")
    config_path = os.path.join(directory, "config.json")
    for plan in (config_path, config):
        other = shardload.load(directory, rank=1, world=2, plan=plan)
        assert sorted(other) == sorted(hf)
        assert all(np.array_equal(other[n], hf[n]) and other[n].shape == hf[n].shape
                   for n in hf)
    assert shardload.load(directory, rank=1, world=2, plan=config).stats["plan"] == "<plan dict>"


def test_our_plan_format_as_dict_and_file(llama, full, tmp_path):
    directory, _ = llama
    plan = {"tp_plan_version": 1, "rules": [
        {"match": "model.layers.*.mlp.down_proj", "split": "row"},
        {"match": "model.layers.*.mlp.gate_proj", "split": "col"},
        {"match": "model.embed_tokens", "split": "skip"}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))

    def expect(name, array, rank):
        c = -(-array.shape[-1 if "down_proj" in name else 0] // 2)
        if ".mlp.down_proj." in name:
            return array[:, rank * c:(rank + 1) * c]
        if ".mlp.gate_proj." in name:
            return array[rank * c:(rank + 1) * c, :]
        return array

    for given in (plan, path):
        for rank in (0, 1):
            loaded = shardload.load(directory, rank=rank, world=2, plan=given)
            assert "model.embed_tokens.weight" not in loaded, "skip: no rank loads it"
            rest = {n: a for n, a in full.items() if n != "model.embed_tokens.weight"}
            check_rank(loaded, rest, lambda n, a, r=rank: expect(n, a, r))


def test_plan_errors_name_the_plan(llama, tmp_path):
    directory, _ = llama
    indivisible = {"tp_plan_version": 1, "uneven": "exact",
                   "rules": [{"match": "model.layers.*.mlp.gate_proj", "split": "col"}]}
    with pytest.raises(shardload.Error) as info:
        shardload.load(directory, rank=0, world=3, plan=indivisible)
    assert info.value.code == "tp_indivisible" and info.value.code_number == 404
    assert info.value.path == "<plan dict>" and "<plan dict>" in str(info.value)
    assert "gate_proj" in info.value.tensor
    with pytest.raises(shardload.Error) as info:
        shardload.open(directory).plan(world=3, plan=indivisible)
    assert info.value.code == "tp_indivisible"
    missing = str(tmp_path / "no-such-plan.json")
    with pytest.raises(shardload.Error) as info:
        shardload.load(directory, rank=0, world=2, plan=missing)
    assert info.value.code == "io_error" and info.value.path == missing
    bad = tmp_path / "bad.json"
    bad.write_text('{"tp_plan_version": 1, "rules": [{"match": "x", "split": "diagonal"}]}')
    with pytest.raises(shardload.Error) as info:
        shardload.load(directory, rank=0, world=2, plan=str(bad))
    assert info.value.code == "tp_bad_rule" and info.value.path == str(bad)


def test_dict_plan_is_passed_in_memory(llama, monkeypatch, tmp_path):
    """A dict plan never becomes a file: the library gets its JSON text."""
    directory, config = llama
    expected = shardload.load(directory, rank=0, world=2, plan="hf")
    import tempfile

    def no_temp_files(*args, **kwargs):
        raise AssertionError("a dict plan must not be written to a temporary file")

    for name in ("TemporaryDirectory", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_temp_files)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    loaded = shardload.load(directory, rank=0, world=2, plan=dict(config))
    assert sorted(loaded) == sorted(expected)
    assert all(np.array_equal(loaded[n], expected[n]) for n in expected)
    assert list(tmp_path.iterdir()) == []


def test_plan_every_rank_from_one_call(llama):
    """Checkpoint.plan without rank reports every rank, each as plan(rank=r);
    per-tensor reads add up to the rank's totals."""
    directory, config = llama
    ckpt = shardload.open(directory)
    for plan in ("hf", config):
        # Buffered: an auto plan follows the page cache, which may change between calls.
        every = ckpt.plan(world=4, plan=plan, mode="buffered")
        assert [p.rank for p in every] == [0, 1, 2, 3]
        for rank, p in enumerate(every):
            assert p == ckpt.plan(world=4, rank=rank, plan=plan, mode="buffered")
            assert p.read_ops == sum(t.read_ops for t in p.tensors.values())
            assert p.bytes_read == sum(t.bytes_read for t in p.tensors.values())
            assert all(t.strategy in ("exact", "staged", "mixed", "mapped")
                       for t in p.tensors.values())


def test_a_config_file_is_told_apart_by_content_not_name(llama, tmp_path):
    directory, config = llama
    renamed = tmp_path / "settings.json"  # a config.json under another name
    renamed.write_text(json.dumps(config))
    hf = shardload.open(directory).plan(world=2, rank=1, plan="hf")
    assert shardload.open(directory).plan(world=2, rank=1, plan=str(renamed)) == hf


@pytest.mark.parametrize("max_over_read", [1, 1.5, 8])
def test_max_over_read_caps_what_a_rank_reads(llama, full, max_over_read):
    directory, config = llama
    for rank in range(4):
        # Buffered: what auto mode plans depends on the page cache, which the
        # load itself changes.
        loaded = shardload.load(directory, rank=rank, world=4, plan="hf",
                                max_over_read=max_over_read, mode="buffered")
        check_rank(loaded, full, lambda n, a, r=rank: oracle.hf_slice(n, a, config, 4, r),
                   max_over_read)
        planned = shardload.open(directory).plan(rank=rank, world=4, plan="hf",
                                                 max_over_read=max_over_read, mode="buffered")
        assert planned.bytes_read == loaded.stats["bytes_read"]


def test_max_over_read_is_checked(llama):
    directory, _ = llama
    with pytest.raises(ValueError, match="max_over_read"):
        shardload.load(directory, rank=0, world=2, plan="hf", max_over_read=0.5)
    with pytest.raises(TypeError, match="max_over_read"):
        shardload.load(directory, rank=0, world=2, plan="hf", max_over_read="2")


@pytest.mark.parametrize("strategy", ["exact", "staged", "mixed", "mapped"])
def test_read_strategy_forced_matches_numpy_slices(llama, full, strategy):
    """read_strategy= forces how row-split slices are read; every rank equals
    numpy's slices, and the plan's bytes_read and read_ops are the load's."""
    directory, config = llama
    ckpt = shardload.open(directory)
    reported = set()
    for rank in range(4):
        loaded = shardload.load(directory, rank=rank, world=4, plan="hf", mode="buffered",
                                read_strategy=strategy)
        check_rank(loaded, full, lambda n, a, r=rank: oracle.hf_slice(n, a, config, 4, r))
        planned = ckpt.plan(rank=rank, world=4, plan="hf", mode="buffered",
                            read_strategy=strategy)
        assert planned.bytes_read == loaded.stats["bytes_read"]
        assert planned.read_ops == loaded.stats["read_ops"]
        reported |= {t.strategy for t in planned.tensors.values()}
    assert strategy in reported  # the hf plan splits some tensors by rows


def test_read_strategy_is_checked(llama):
    directory, _ = llama
    with pytest.raises(ValueError, match="read_strategy"):
        shardload.load(directory, rank=0, world=2, plan="hf", read_strategy="gather")
    with pytest.raises(TypeError, match="read_strategy"):
        shardload.open(directory).plan(rank=0, world=2, plan="hf", read_strategy=1)


def test_plan_reports_how_block_scales_follow_their_weight(tmp_path):
    """FP8 block scales of a row-split weight: PlannedTensor.quant says which
    blocks each rank gets, computed here from the block size."""
    weight = np.zeros((256, 384), dtype=np.uint8)       # F8_E4M3 [out, in]
    scales = np.ones((2, 3), dtype=np.float32)          # 128 x 128 blocks
    oracle.write_file(tmp_path / "model.safetensors", {
        "layers.0.o_proj.weight": ("F8_E4M3", weight.shape, weight.tobytes()),
        "layers.0.o_proj.weight_scale_inv": ("F32", scales.shape, scales.tobytes())})
    plan = {"tp_plan_version": 1,
            "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]},
            "rules": [{"match": "layers.*.o_proj", "split": "row"}]}
    plans = shardload.open(tmp_path / "model.safetensors").plan(world=2, plan=plan)
    for rank, rank_plan in enumerate(plans):
        w = rank_plan.tensors["layers.0.o_proj.weight"]
        s = rank_plan.tensors["layers.0.o_proj.weight_scale_inv"]
        begin, end = rank * 192, (rank + 1) * 192        # the rank's columns of 384
        assert w.shape == (256, 192)
        assert w.quant is None, "an FP8 weight is split as a plain tensor"
        assert s.quant.follows == "layers.0.o_proj.weight"
        assert s.quant.split_dim == 1 and s.quant.per == 128
        blocks = (begin // 128, -(-end // 128))            # blocks covering [begin, end)
        assert s.quant.ranges == (((begin, end), blocks),)
        assert s.shape == (2, blocks[1] - blocks[0])
        assert s.quant.straddles, "block 1 holds columns of both ranks"
    plain = shardload.open(tmp_path / "model.safetensors").plan(world=2, plan={
        "tp_plan_version": 1, "rules": [{"match": "layers.*.o_proj", "split": "row"}]})
    assert all(t.quant is None for p in plain for t in p.tensors.values())
