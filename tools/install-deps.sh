#!/usr/bin/env bash
# Installs the Debian 12 packages shardload needs to build and test, when
# any is missing. Run as root (or with sudo available). python3-torch (large)
# is optional: only the Python binding's torch tests use it, and they skip
# without it; SHARDLOAD_NO_TORCH=1 leaves it out, and a failed install of it
# is only a warning. Open MPI (libopenmpi-dev, openmpi-bin) builds and tests
# `shardload load --mpi`. The packaging tools (tests/package/check_packages.sh:
# `pip install .`, tools/make-deb.sh) need python3-setuptools python3-wheel
# python3-pip python3-venv and dpkg-dev (dpkg-shlibdeps).
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libtbb-dev liburing-dev rapidjson-dev
          libfmt-dev doctest-dev libre2-dev libssl-dev python3 python3-numpy python3-dev pybind11-dev
          python3-pytest python3-tqdm libopenmpi-dev openmpi-bin
          python3-setuptools python3-wheel python3-pip python3-venv dpkg-dev)
optional=()
[ "${SHARDLOAD_NO_TORCH:-0}" = 1 ] || optional+=(python3-torch)

missing_of() {  # prints the packages among "$@" that are not installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(missing_of "${packages[@]}")
mapfile -t missing_optional < <(missing_of "${optional[@]}")
[ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  install "${missing[@]}"
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "installing (optional): ${missing_optional[*]}"
  install "${missing_optional[@]}" ||
    echo "warning: could not install ${missing_optional[*]}; the torch tests will be skipped" >&2
fi
