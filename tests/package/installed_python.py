"""installed_python.py CHECKPOINT VERSION PREFIX [--dist]: run by an
installed shardload's interpreter from outside the source tree. Checks that
`import shardload` comes from under PREFIX, that shardload.__version__ (and
with --dist the installed distribution's metadata) is VERSION, and that
shardload.load(CHECKPOINT) equals the independent numpy reader
(tests/python/safetensors_oracle.py) tensor for tensor."""
import importlib.metadata
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import safetensors_oracle as oracle  # noqa: E402

import shardload  # noqa: E402


def main():
    ckpt, version, prefix = sys.argv[1:4]
    where = os.path.realpath(shardload.__file__)
    if not where.startswith(os.path.realpath(prefix) + os.sep):
        sys.exit(f"shardload was imported from {where}, not from under {prefix}")
    if shardload.__version__ != version:
        sys.exit(f"shardload.__version__ is {shardload.__version__}, the project's is {version}")
    if "--dist" in sys.argv[4:] and importlib.metadata.version("shardload") != version:
        sys.exit(f"the installed distribution is {importlib.metadata.version('shardload')}")
    expected = oracle.read_dir(ckpt)
    loaded = shardload.load(ckpt)
    if sorted(loaded) != sorted(expected):
        sys.exit(f"loaded {len(loaded)} tensors, the checkpoint has {len(expected)}")
    for name, entry in expected.items():
        if not np.array_equal(np.asarray(loaded[name]), oracle.view(entry)):
            sys.exit(f"{name}: loaded bytes differ from the file's")
    print(f"ok: shardload {version} from {os.path.dirname(where)}: {len(loaded)} tensors equal")


main()
