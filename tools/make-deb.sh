#!/usr/bin/env bash
# tools/make-deb.sh OUTDIR: builds shardload in Release from a clean build
# directory (cmake/packaged.cmake: prefix /usr, Python package in
# /usr/lib/python3/dist-packages) and writes OUTDIR/shardload_<version>_<arch>.deb
# with CPack (cmake/package.cmake; Depends from dpkg-shlibdeps). Prints the
# .deb's path. SHARDLOAD_DEB_BUILD_DIR: the build directory (default
# build-deb; emptied first); a later `pip wheel` with SHARDLOAD_BUILD_DIR set
# to it reuses this build.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: tools/make-deb.sh OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
root=$(pwd)
build=${SHARDLOAD_DEB_BUILD_DIR:-$root/build-deb}
rm -rf "$build"
mkdir -p "$build"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build" -G Ninja -C cmake/packaged.cmake \
  -DPython3_EXECUTABLE="$(readlink -f /usr/bin/python3)" "${launcher[@]}" >"$build/configure.log"
cmake --build "$build" -j"$(nproc)"
(cd "$build" && cpack -G DEB -B "$build/cpack" >"$build/cpack.log")
deb=$(ls "$build"/cpack/shardload_*.deb)
mv "$deb" "$out/"
echo "$out/$(basename "$deb")"
