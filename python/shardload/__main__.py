"""`python -m shardload ARGS...` runs the shardload command (see _cli.py)."""
import sys

from ._cli import main

sys.exit(main())
