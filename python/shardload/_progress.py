"""progress=True: shows a load's progress as a tqdm bar when tqdm is
importable (python3-tqdm), else as a plain line on stderr, rewritten in
place. The reporter is called from the loader's worker threads with the GIL
held (so one call at a time), possibly slightly out of order. Thread-compatible: one Reporter per load."""
import sys
import time


def reporter(progress, description):
    """What to pass to the C++ load for PROGRESS (None, False, True or a
    callable): None, the callable itself, or a Reporter (close() it after the
    load)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return Reporter(description)
    return progress


def close(callback):
    """Ends the display of CALLBACK when it is a Reporter."""
    if isinstance(callback, Reporter):
        callback.close()


class Reporter:
    """progress(bytes_done, bytes_total) -> a tqdm bar or a stderr line."""

    MIN_INTERVAL = 0.2  # seconds between two plain lines

    def __init__(self, description):
        self._description = description
        self._bar = None
        self._tqdm = _tqdm()
        self._done = 0
        self._total = 0
        self._last_line = 0.0

    def __call__(self, done, total):
        self._done = max(self._done, done)  # calls may arrive out of order
        self._total = total
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=total, unit="B", unit_scale=True,
                                       desc=self._description)
            self._bar.update(self._done - self._bar.n)
        elif done == total or time.monotonic() - self._last_line >= self.MIN_INTERVAL:
            self._last_line = time.monotonic()
            self._line()

    def _line(self):
        percent = 100.0 * self._done / self._total if self._total else 100.0
        sys.stderr.write(f"\r{self._description}: {self._done / 1e9:.2f} / "
                         f"{self._total / 1e9:.2f} GB ({percent:.0f}%)")
        sys.stderr.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self._tqdm is None and self._total:
            self._line()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
