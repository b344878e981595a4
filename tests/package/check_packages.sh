#!/usr/bin/env bash
# check_packages.sh [WORK]: the packaged installs, as a user gets them
# (tools/test.sh runs it after the suite; WORK defaults to a temporary
# directory, removed on success). From a clean copy of the checkout (its
# tracked and untracked, not ignored files), ONE Release build serves both:
#   1. tools/make-deb.sh: the .deb's name, fields, Depends and file list;
#      unpacked with dpkg -x, its CLI, its Python package (python3 -m
#      shardload too), its C ABI's shardload_version() and a find_package
#      consumer (run_consumer.sh) against the unpacked usr/;
#   2. `pip install --no-build-isolation --no-index` of the copy into a venv
#      (--system-site-packages: Debian's numpy) and `pip wheel` installed
#      into a second one; from another directory, each imports shardload
#      from its venv, loads a generated checkpoint equal to the numpy oracle,
#      and runs `shardload --version` and `python -m shardload --version`.
# Every version reported equals the one in CMakeLists.txt's project() line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-$(mktemp -d /tmp/shardload-pkg.XXXXXX)}
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
version=$(sed -n 's/^project(shardload VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "no version in CMakeLists.txt's project() line" >&2; exit 1; }
fail() { echo "check_packages: $*" >&2; exit 1; }
expect_version() {  # expect_version WHAT OUTPUT
  [ "$2" = "shardload $version" ] || fail "$1 says '$2', expected 'shardload $version'"
}

# A clean copy of the checkout: no build directories, nothing ignored.
mkdir "$work/src"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z -co --exclude-standard |
     tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$work/src"
else
  tar -C "$root" --exclude='./build*' --exclude='*.egg-info' -cf - . | tar -xf - -C "$work/src"
fi
# The build directory sits inside the copy, as build-deb does in a checkout,
# so that ccache's relative paths (CCACHE_BASEDIR) match between the two.
export SHARDLOAD_DEB_BUILD_DIR=$work/src/build-package SHARDLOAD_BUILD_DIR=$work/src/build-package

# --- 1. the Debian package --------------------------------------------------
deb=$("$work/src/tools/make-deb.sh" "$work/deb" | tail -n 1)
arch=$(dpkg --print-architecture)
[ "$(basename "$deb")" = "shardload_${version}_${arch}.deb" ] || fail "unexpected name $deb"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version: $(dpkg-deb -f "$deb" Version)"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for dep in libc6 libstdc++6 liburing2 libtbb12 libfmt9 libre2-9 libssl3 python3 python3-numpy; do
  echo ", $depends," | grep -q ", $dep[ ,]" || fail "Depends lacks $dep"
done
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/deb-files"
libdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
site=/usr/lib/python3/dist-packages/shardload
for f in /usr/bin/shardload "$libdir/libshardload.so.0" "$libdir/libshardload.so" \
         "$libdir/libshardload_loader.a" /usr/include/shardload/shardload.h \
         /usr/include/shardload/loader.h "$libdir/cmake/shardload/shardloadConfig.cmake" \
         "$libdir/cmake/shardload/shardloadConfigVersion.cmake" \
         "$libdir/cmake/shardload/shardloadTargets.cmake" "$site/__init__.py" \
         "$site/__main__.py" "$site/_cli.py"; do
  grep -qx -- "$f" "$work/deb-files" || fail "the .deb lacks $f"
done
grep -q "^$site/_shardload\..*\.so$" "$work/deb-files" || fail "the .deb lacks the extension"
if grep -v -e '^/usr/' -e '^/$' "$work/deb-files"; then fail "files outside /usr"; fi
dpkg -x "$deb" "$work/root"
usr=$work/root/usr
expect_version ".deb's shardload --version" "$("$usr/bin/shardload" --version | head -n 1)"
"$usr/bin/shardload" generate "$work/ckpt" --size 8MB >/dev/null
site_dir=$work/root/usr/lib/python3/dist-packages
(cd "$work" && PYTHONPATH=$site_dir /usr/bin/python3 "$work/src/tests/package/installed_python.py" \
   "$work/ckpt" "$version" "$site_dir")
expect_version ".deb's python3 -m shardload --version" \
  "$(cd "$work" && PYTHONPATH=$site_dir /usr/bin/python3 -m shardload --version | head -n 1)"
c_version=$(/usr/bin/python3 -c 'import ctypes, sys
lib = ctypes.CDLL(sys.argv[1]); lib.shardload_version.restype = ctypes.c_char_p
print(lib.shardload_version().decode())' "$work/root$libdir/libshardload.so.0")
expect_version ".deb's shardload_version()" "shardload $c_version"
printf '#!/bin/sh\nexec "%s" generate "$1" --size 4MB >/dev/null\n' "$usr/bin/shardload" >"$work/generate"
chmod +x "$work/generate"
sh "$here/run_consumer.sh" "$usr" "$here/consumer" "$work/consumer" "$work/generate"
grep -q "found shardload $version\$" "$work/consumer/configure.log" ||
  fail "find_package(shardload) did not find version $version"

# --- 2. pip: install from the tree, and a wheel -----------------------------
pip_quiet=(--no-build-isolation --no-index --quiet --disable-pip-version-check)
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install "${pip_quiet[@]}" "$work/src"
/usr/bin/python3 -m venv --system-site-packages "$work/venv-wheel"
"$work/venv/bin/pip" wheel "${pip_quiet[@]}" --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/shardload-*.whl)
case $(basename "$wheel") in shardload-"$version"-cp3*-linux_*.whl) ;; *) fail "wheel $wheel" ;; esac
"$work/venv-wheel/bin/pip" install "${pip_quiet[@]}" "$wheel"
# The wheel's binaries are copied from the build tree: none may look there.
for f in "$work"/venv-wheel/lib/python3*/site-packages/shardload/{_bin/shardload,_shardload*.so}; do
  if readelf -d "$f" | grep -E 'R(UN)?PATH' | grep -F "$work"; then fail "$f looks in the build tree"; fi
done
for venv in "$work/venv" "$work/venv-wheel"; do
  (cd "$work" && "$venv/bin/python" "$work/src/tests/package/installed_python.py" \
     "$work/ckpt" "$version" "$venv" --dist)
  expect_version "$venv/bin/shardload --version" "$(cd "$work" && "$venv/bin/shardload" --version | head -n 1)"
  expect_version "$venv: python -m shardload --version" \
    "$(cd "$work" && "$venv/bin/python" -m shardload --version | head -n 1)"
done
rm -rf "$work"
echo "packages ok: shardload $version (.deb, pip install, pip wheel)"
