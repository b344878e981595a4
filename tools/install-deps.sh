#!/usr/bin/env bash
# Installs the Debian 12 packages shardload needs to build and test, when
# any is missing. Run as root (or with sudo available).
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libtbb-dev liburing-dev rapidjson-dev
          libfmt-dev doctest-dev python3 python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
