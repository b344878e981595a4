"""The `shardload` command from Python (python/shardload/_cli.py): `python -m
shardload` runs the CLI built beside the package and passes its arguments,
exit status and output through unchanged; the launcher finds the binary in
a <prefix>/bin beside an installed package, and never takes a Python script
(a venv's console script) for it."""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import shardload
from shardload import _cli

CLI = os.environ.get("SHARDLOAD_CLI", "")
needs_cli = pytest.mark.skipif(not CLI, reason="the shardload CLI is not built")


def _run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60)


@needs_cli
def test_module_runs_the_built_cli_with_the_package_version():
    assert os.path.realpath(_cli.binary()) == os.path.realpath(CLI)
    out = _run(sys.executable, "-m", "shardload", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"shardload {shardload.__version__}"


@needs_cli
def test_arguments_status_and_output_pass_through(tmp_path):
    missing = str(tmp_path / "no-such-checkpoint")
    direct = _run(CLI, "inspect", missing)
    launched = _run(sys.executable, "-m", "shardload", "inspect", missing)
    assert direct.returncode != 0 and missing in direct.stderr
    assert (launched.returncode, launched.stdout, launched.stderr) == \
           (direct.returncode, direct.stdout, direct.stderr)


def _installed_launcher(prefix):
    """A copy of _cli.py laid out as under <prefix>/lib/python3/dist-packages."""
    package = prefix / "lib" / "python3" / "dist-packages" / "shardload"
    package.mkdir(parents=True)
    shutil.copy(_cli.__file__, package / "_cli.py")
    spec = importlib.util.spec_from_file_location("installed_cli", package / "_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_python_script_is_never_taken_for_the_binary(tmp_path):
    launcher = _installed_launcher(tmp_path)
    script = tmp_path / "bin" / "shardload"
    script.parent.mkdir()
    script.write_text("#!/usr/bin/env python3\nfrom shardload._cli import main\nmain()\n")
    script.chmod(0o755)
    with pytest.raises(FileNotFoundError, match="not installed beside") as error:
        launcher.binary()
    assert os.path.realpath(script) in str(error.value)


@needs_cli
def test_prefix_bin_beside_an_installed_package(tmp_path):
    launcher = _installed_launcher(tmp_path)
    (tmp_path / "bin").mkdir()
    shutil.copy(CLI, tmp_path / "bin" / "shardload")
    assert os.path.realpath(launcher.binary()) == os.path.realpath(tmp_path / "bin" / "shardload")
