"""The `shardload` command from Python: the `shardload` console script of a
pip install and `python -m shardload` both replace this process with the CLI
binary that ships with the package. Where it lives: shardload/_bin/shardload
in a wheel; <prefix>/bin/shardload beside a `cmake --install` tree or the
Debian package (/usr/lib/python3/dist-packages/shardload -> /usr/bin);
<build>/tools/shardload beside <build>/python/shardload in a build tree."""
import os
import sys
from pathlib import Path


def _is_binary(path):
    """True when PATH is an executable ELF file (never a Python launcher
    script such as a venv's bin/shardload, which would exec itself)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def _candidates():
    here = Path(__file__).resolve().parent
    yield here / "_bin" / "shardload"
    yield here.parent.parent / "tools" / "shardload"
    for prefix in list(here.parents)[3:5]:  # <prefix>/lib[/<multiarch>]/python3*/<site>/shardload
        yield prefix / "bin" / "shardload"


def binary():
    """The path of the shardload CLI installed with this package."""
    looked = []
    for path in _candidates():
        if _is_binary(path):
            return str(path)
        looked.append(str(path))
    raise FileNotFoundError("the shardload command-line tool is not installed beside the "
                            f"Python package {Path(__file__).parent}; looked for "
                            + ", ".join(looked))


def main(argv=None):
    """Runs the CLI with ARGV (default: this process's arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        path = binary()
    except FileNotFoundError as e:
        print(f"shardload: {e}", file=sys.stderr)
        return 127
    os.execv(path, ["shardload", *args])
