"""A checkpoint is the files it was opened from (issue 27, item 4):
shardload.open(path), then a shard renamed over (same size, two tensors'
offsets swapped, new bytes: how a Hugging Face cache snapshot is updated),
then .load() returns the bytes of the file that was opened, never the new
bytes under the old names; `shardload load --repeat` likewise while the
rename lands between its loads; a shard changed in place is refused naming
it. The oracle: the independent reader over the original files, read before
the rename."""
import os
import subprocess
import time

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload

SIZE = (64, 96)  # F32: 24 KiB per tensor


def _tensors(seed, swapped=False):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(SIZE).astype("<f4").tobytes() for _ in range(2))
    c = bytes(range(200))
    pairs = [("b", b), ("a", a)] if swapped else [("a", a), ("b", b)]
    out = {name: ("F32", SIZE, raw) for name, raw in pairs}
    out["c"] = ("U8", (200,), c)
    return out


def _checkpoint(tmp_path):
    """A two-shard indexed checkpoint; returns (dir, shard path, replacement)."""
    directory = tmp_path / "ckpt"
    directory.mkdir(parents=True)
    oracle.write_index(str(directory), {
        "model-00001-of-00002.safetensors": _tensors(1),
        "model-00002-of-00002.safetensors": {"d": ("U8", (5000,), bytes(5000))},
    })
    shard = directory / "model-00001-of-00002.safetensors"
    replacement = tmp_path / "new.safetensors"
    oracle.write_file(str(replacement), _tensors(2, swapped=True), {"format": "pt"})
    assert os.path.getsize(replacement) == os.path.getsize(shard)
    return str(directory), str(shard), str(replacement)


def _check(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for name, entry in expected.items():
        np.testing.assert_array_equal(np.asarray(loaded[name]), oracle.view(entry))


def _swapped_under_old_names(expected, shard):
    """What a reader of the old headers finds in the new file: differs."""
    with open(shard, "rb") as f:
        blob = f.read()
    return any(blob[e["offset"]:e["offset"] + len(e["raw"])] != e["raw"]
               for e in expected.values() if e["shard"] == os.path.basename(shard))


@pytest.mark.parametrize("mode", ["buffered", "direct", "auto"])
def test_rename_between_open_and_load_reads_the_opened_file(tmp_path, mode):
    directory, shard, replacement = _checkpoint(tmp_path)
    expected = oracle.read_dir(directory)
    ckpt = shardload.open(directory)
    os.rename(replacement, shard)
    assert _swapped_under_old_names(expected, shard)
    try:
        loaded = ckpt.load(mode=mode)
    except shardload.Error as e:
        if mode == "direct" and e.code == "unsupported":
            pytest.skip(f"O_DIRECT unsupported here: {e}")
        raise
    _check(loaded, expected)
    # A checkpoint opened now describes and reads the new file.
    _check(shardload.open(directory).load(mode=mode), oracle.read_dir(directory))


def test_changed_in_place_is_refused_naming_the_shard(tmp_path):
    directory, shard, replacement = _checkpoint(tmp_path)
    ckpt = shardload.open(directory)
    with open(replacement, "rb") as src, open(shard, "r+b") as dst:
        dst.write(src.read())
    st = os.stat(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    with pytest.raises(shardload.Error) as info:
        ckpt.load()
    assert info.value.code == "shard_changed"
    assert info.value.path == shard


def test_cli_repeat_reads_the_opened_file_across_a_rename(tmp_path, cli):
    """`load --repeat N --save OUT` saves the last reload: with the rename
    landing while it runs, every reload must still read the opened file."""
    for attempt in range(4):
        directory, shard, replacement = _checkpoint(tmp_path / str(attempt))
        expected = oracle.read_dir(directory)
        out = tmp_path / str(attempt) / "out"
        start = time.monotonic()
        subprocess.run([cli, "load", directory, "--repeat", "200"], check=True,
                       capture_output=True)
        per_load = (time.monotonic() - start) / 200
        repeat = max(400, int(3.0 / max(per_load, 1e-6)))  # about 3 s
        proc = subprocess.Popen([cli, "load", directory, "--repeat", str(repeat),
                                 "--save", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.0)
        os.rename(replacement, shard)
        running = proc.poll() is None
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()
        if not running:
            continue  # finished before the rename: try again, longer
        _check(shardload.open(str(out)).load(), expected)
        return
    pytest.fail("the CLI never was still running at the rename")
