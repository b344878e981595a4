"""The GIL is released while loading, and the progress callback is called
(with the GIL) from the loader's threads; an exception it raises comes out
of load() once the reads are done."""
import sys
import threading
import time

import numpy as np
import pytest

import safetensors_oracle as oracle
import shardload

MIB = 1 << 20


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    """One 72 MiB tensor: past the loader's 64 MiB progress step, so a load
    reports progress at least twice."""
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    raw = np.arange(72 * MIB // 8, dtype="<u8").tobytes()
    oracle.write_file(str(path), {"w": ("U64", (len(raw) // 8,), raw)})
    yield str(path)
    path.unlink()  # pytest keeps its temporary directories; not this file


def observed_during_load(ckpt):
    """Whether another Python thread ran while ckpt.load() was running.

    With a huge switch interval, the interpreter never takes the GIL away
    from the main thread; the watcher thread, already waiting for the GIL,
    can run only when the main thread gives it up itself, as a load that
    releases the GIL does."""
    inside = [False]
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(inside[0])
            time.sleep(1e-6)  # gives the GIL back, then waits for it again

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        inside[0] = True
        loaded = ckpt.load(threads=1)
        inside[0] = False
        stop.set()
        watcher.join()
    finally:
        sys.setswitchinterval(interval)
    assert loaded.stats["tensors"] == 1
    return any(seen)


def test_gil_is_released_while_loading(big_checkpoint):
    ckpt = shardload.open(big_checkpoint)
    # The watcher may be slow to reach the GIL (a busy machine); a load that
    # holds the GIL can never pass, whatever the number of tries.
    assert any(observed_during_load(ckpt) for _ in range(5))


def test_progress_reports_bytes(big_checkpoint):
    calls = []
    loaded = shardload.load(big_checkpoint, progress=lambda done, total: calls.append(
        (done, total, threading.get_ident())))
    total = loaded.stats["bytes"]
    assert total == 72 * MIB
    assert len(calls) >= 2, calls
    assert all(isinstance(d, int) and isinstance(t, int) for d, t, _ in calls)
    assert all(t == total and 0 < d <= total for d, t, _ in calls)
    assert max(d for d, _, _ in calls) == total
    assert np.array_equal(loaded["w"], np.arange(total // 8, dtype=np.uint64))


def test_progress_exception_is_raised_after_the_load(big_checkpoint):
    calls = []

    class Stop(Exception):
        pass

    raised = Stop("from progress")

    def progress(done, total):
        calls.append(done)
        raise raised

    with pytest.raises(Stop) as info:
        shardload.load(big_checkpoint, threads=2, progress=progress)
    assert info.value is raised
    assert len(calls) == 1, "a callback that raised is not called again"
    # The module is still usable afterwards.
    assert shardload.load(big_checkpoint, threads=1).stats["bytes"] == 72 * MIB
