"""shardload.load into numpy: zero-copy views that match the independent
reader byte for byte, .dtypes/.stats, selection, threads, O_DIRECT, and the
keep-alive of the loader-owned memory."""
import gc
import pathlib
import weakref

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload


def check_matches(loaded, expected):
    assert list(loaded) == sorted(expected), "names (in name order)"
    for name, entry in expected.items():
        array = loaded[name]
        want = oracle.view(entry)
        assert loaded.dtypes[name] == entry["dtype"], name
        assert array.dtype == want.dtype, (name, array.dtype, want.dtype)
        assert array.shape == want.shape, (name, array.shape, want.shape)
        assert array.tobytes() == entry["raw"], f"{name}: bytes differ"
        assert np.array_equal(array, want), name


def test_every_dtype_matches_the_oracle(dtypes_checkpoint):
    loaded = shardload.load(dtypes_checkpoint)
    expected = oracle.read_dir(dtypes_checkpoint)
    check_matches(loaded, expected)
    assert isinstance(loaded, dict)
    # The views numpy lacks a type for are the documented unsigned integers.
    assert loaded["t.bf16"].dtype == np.uint16
    assert loaded["t.f8_e4m3"].dtype == np.uint8
    assert loaded["t.f4"].shape == (3, 4) and loaded["odd.f4"].shape == (3,)
    assert loaded["t.f6_e3m2"].shape == (3, 6) and loaded["odd.f6"].shape == (3,)
    assert loaded["scalar.f32"].shape == () and loaded["empty.f32"].shape == (0, 4)


def test_views_are_zero_copy_into_one_owner(dtypes_checkpoint):
    loaded = shardload.load(dtypes_checkpoint)
    bases = {id(array.base) for array in loaded.values()}
    assert bases == {id(loaded.memory)}
    assert isinstance(loaded.memory, shardload.LoadedMemory)
    assert len(loaded.memory) == len(loaded)
    assert loaded.memory.nbytes == sum(a.nbytes for a in loaded.values())
    assert all(not a.flags.owndata for a in loaded.values())


def test_stats_describe_the_load(dtypes_checkpoint):
    # Buffered: in auto mode a cold file is read with O_DIRECT, whose reads
    # round out to the alignment (bytes_read > bytes).
    loaded = shardload.load(dtypes_checkpoint, threads=2, mode="buffered")
    expected = oracle.read_dir(dtypes_checkpoint)
    stats = loaded.stats
    assert stats["tensors"] == len(expected)
    assert stats["bytes"] == sum(len(e["raw"]) for e in expected.values())
    assert stats["bytes_read"] == stats["bytes"]
    assert stats["threads"] == 2 and stats["direct"] is False
    assert stats["backend"] in ("io_uring", "pread") and stats["backend_reason"]
    assert "rank" not in stats


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_counts_give_the_same_bytes(dtypes_checkpoint, threads):
    loaded = shardload.load(dtypes_checkpoint, threads=threads)
    assert loaded.stats["threads"] == threads
    check_matches(loaded, oracle.read_dir(dtypes_checkpoint))


def test_direct_io(dtypes_checkpoint):
    try:
        loaded = shardload.load(dtypes_checkpoint, direct=True)
    except shardload.Error as error:
        if error.code == "unsupported":
            pytest.skip(f"O_DIRECT not supported here: {error}")
        raise
    assert loaded.stats["direct"] is True
    assert loaded.stats["mode"] == "direct"
    assert loaded.stats["bytes_read"] >= loaded.stats["bytes"]
    assert loaded.stats["bytes_direct"] == loaded.stats["bytes_read"]
    check_matches(loaded, oracle.read_dir(dtypes_checkpoint))


@pytest.mark.parametrize("mode", [None, "auto", "buffered"])
def test_read_modes(dtypes_checkpoint, mode):
    # The checkpoint was just written: its pages are in the page cache, so
    # auto mode reads it buffered, as forced buffered mode does.
    loaded = shardload.load(dtypes_checkpoint, mode=mode)
    stats = loaded.stats
    assert stats["mode"] == (mode or "auto")
    assert stats["bytes_direct"] + stats["bytes_buffered"] == stats["bytes_read"]
    if mode == "buffered":
        assert stats["bytes_direct"] == 0 and stats["direct"] is False
    assert stats["mode_note"] == ""
    check_matches(loaded, oracle.read_dir(dtypes_checkpoint))


def test_select_names_and_globs(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    one = shardload.load(dtypes_checkpoint, select="t.bf16")
    assert list(one) == ["t.bf16"]
    assert one["t.bf16"].tobytes() == expected["t.bf16"]["raw"]
    two = shardload.load(dtypes_checkpoint, select=["odd.*", "scalar.f32"])
    assert list(two) == ["odd.f4", "odd.f6", "scalar.f32"]
    every_t = shardload.load(dtypes_checkpoint, select=("t.*",))
    assert list(every_t) == sorted(n for n in expected if n.startswith("t."))
    check_matches(every_t, {n: e for n, e in expected.items() if n.startswith("t.")})
    regex = shardload.load(dtypes_checkpoint, select="re:t\\.f8_.*")
    assert list(regex) == sorted(n for n in expected if n.startswith("t.f8_"))


def test_select_that_matches_nothing_raises(dtypes_checkpoint):
    with pytest.raises(shardload.Error) as info:
        shardload.load(dtypes_checkpoint, select="nothing.*")
    assert info.value.code == "tensor_not_found"


def test_memory_outlives_the_dict(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    loaded = shardload.load(dtypes_checkpoint)
    kept = loaded["t.f64"]
    tail = loaded["t.i32"][1:]  # a view of a view
    owner = weakref.ref(kept.base)
    del loaded
    gc.collect()
    # Other processes' allocations would reuse freed memory; make our own.
    scratch = [np.full(1 << 16, 0xAB, np.uint8) for _ in range(64)]
    assert owner() is not None, "the arrays no longer keep their memory"
    assert kept.tobytes() == expected["t.f64"]["raw"]
    assert tail.tobytes() == oracle.view(expected["t.i32"])[1:].tobytes()
    del kept, scratch
    gc.collect()
    assert owner() is not None, "the sliced view must keep the memory too"
    del tail
    gc.collect()
    assert owner() is None, "the memory must be freed with its last array"


def test_arrays_are_writable_and_loads_independent(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    first = shardload.load(dtypes_checkpoint)
    first["t.u8"][...] = 7
    assert first["t.u8"].flags.writeable
    assert first["t.i8"].tobytes() == expected["t.i8"]["raw"], "writes stay in their tensor"
    second = shardload.load(dtypes_checkpoint)
    assert second["t.u8"].tobytes() == expected["t.u8"]["raw"], "a load gets fresh memory"


def test_path_types_and_checkpoint_load(dtypes_checkpoint):
    expected = oracle.read_dir(dtypes_checkpoint)
    check_matches(shardload.load(pathlib.Path(dtypes_checkpoint)), expected)
    check_matches(shardload.load(dtypes_checkpoint.encode()), expected)
    index = pathlib.Path(dtypes_checkpoint) / "model.safetensors.index.json"
    check_matches(shardload.load(index), expected)
    single = pathlib.Path(dtypes_checkpoint) / "model-00001-of-00002.safetensors"
    check_matches(shardload.load(single), oracle.read_file(str(single))[0])
    ckpt = shardload.open(dtypes_checkpoint)
    check_matches(ckpt.load(), expected)
    check_matches(ckpt.load(), expected)  # a Checkpoint loads any number of times


def test_generated_bf16_values(llama):
    """BF16 comes back as its bits; the documented conversion to float32
    gives the values the independent reader decodes."""
    directory, _ = llama
    expected = oracle.read_dir(directory)
    loaded = shardload.load(directory)
    for name, entry in expected.items():
        bits = loaded[name]
        assert loaded.dtypes[name] == "BF16" and bits.dtype == np.uint16
        values = (bits.astype(np.uint32) << 16).view(np.float32)
        want = (np.frombuffer(entry["raw"], "<u2").astype(np.uint32) << 16).view(np.float32)
        assert np.array_equal(values, want.reshape(entry["shape"])), name
        assert np.isfinite(values).all(), name


def test_file_names_that_are_not_utf8(tmp_path):
    """Linux paths are bytes: str paths round-trip through os.fsdecode."""
    import os
    directory = os.path.join(os.fsencode(tmp_path), b"ckpt-\xff")
    os.mkdir(directory)
    path = os.path.join(directory, b"model.safetensors")
    oracle.write_file(path, {"w": ("I32", (2,), b"\1\0\0\0\2\0\0\0")})
    as_str = os.fsdecode(path)
    for given in (path, as_str, pathlib.Path(as_str)):
        assert shardload.load(given)["w"].tolist() == [1, 2]
    ckpt = shardload.open(path)
    assert os.fsencode(ckpt.shards[0].path) == path
    with pytest.raises(shardload.Error) as info:
        shardload.load(os.path.join(directory, b"absent-\xfe"))
    assert os.fsencode(info.value.path) == os.path.join(directory, b"absent-\xfe")
    assert "\udcfe" not in ckpt and "w" in ckpt
