"""The wheel's build (pyproject.toml's setuptools backend): configures and
builds this checkout with CMake in Release (the Python extension and the
CLI), then ships python/shardload/*.py, the extension _shardload*.so and the
CLI as shardload/_bin/shardload. The version is the one written in
CMakeLists.txt's project() line. SHARDLOAD_BUILD_DIR names the CMake build
directory (default: build-wheel in the checkout, kept between runs; beside
the sources like tools/make-deb.sh's build-deb, so that ccache's relative
paths match), so that one Release build can serve this wheel and the .deb."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def project_version():
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r"^project\(shardload VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text, re.M)
    if not match:
        raise RuntimeError("CMakeLists.txt: no `project(shardload VERSION X.Y.Z` line")
    return match.group(1)


def cmake_args():
    """Configure arguments: cmake/packaged.cmake's cache (which
    tools/make-deb.sh uses too), this interpreter, ccache when there."""
    args = ["-G", "Ninja", "-C", str(ROOT / "cmake" / "packaged.cmake"),
            f"-DPython3_EXECUTABLE={os.path.realpath(sys.executable)}"]
    if shutil.which("ccache"):
        args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
    return args


class CMakeBuild(build_ext):
    """Builds the extension and the CLI with CMake and copies both into the
    package being built."""

    def build_extension(self, ext):
        build_dir = Path(os.environ.get("SHARDLOAD_BUILD_DIR") or ROOT / "build-wheel").resolve()
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *cmake_args()], check=True)
        jobs = ["-j", str(self.parallel)] if self.parallel else []
        subprocess.run(["cmake", "--build", str(build_dir), *jobs,
                        "--target", "shardload_python", "shardload_cli"], check=True)
        module = next((build_dir / "python" / "shardload").glob("_shardload*.so"))
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module, target)
        cli = target.parent / "_bin" / "shardload"
        cli.parent.mkdir(exist_ok=True)
        shutil.copy2(build_dir / "tools" / "shardload", cli)


setup(
    version=project_version(),
    packages=["shardload"],
    package_dir={"": "python"},
    ext_modules=[Extension("shardload._shardload", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    options={"build": {"build_base": "build-pip"}},
    zip_safe=False,
)
