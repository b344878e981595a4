#!/bin/sh
# run_consumer.sh BUILD_DIR CONSUMER_SRC WORK WRITE_FIXTURE [FLAGS]: installs
# BUILD_DIR into WORK/prefix (cmake --install; BUILD_DIR may instead be an
# installed prefix, e.g. an unpacked .deb's usr/), configures and builds the
# consumer project against it, and checks that (1) no warning, sanitizer or
# engine/ include flag of shardload's build reached the consumer's compile
# lines, (2) the C++ and the C consumer both load write_fixture's checkpoint
# with the same tensor count and bytes as `shardload load --json` of the
# installed CLI. FLAGS (sanitizer builds) go to the consumer's compile and
# link lines so that it can link the instrumented libraries.
set -eu
build=$1 src=$2 work=$3 fixture=$4 flags=${5:-}
rm -rf "$work"
mkdir -p "$work"
prefix=$build
if [ -f "$build/CMakeCache.txt" ]; then
  prefix=$work/prefix
  cmake --install "$build" --prefix "$prefix" >"$work/install.log"
fi
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
# Nothing of shardload's own build may leak into the consumer.
if grep -E -- '-Wshadow|-Werror|/engine|stage-include' "$work/build/compile_commands.json"; then
  echo "shardload's private flags or include paths reached the consumer" >&2
  exit 1
fi
grep -q -- '-std=c++20\|-std=gnu++20' "$work/build/compile_commands.json" ||
  { echo "shardload::shardload did not ask for C++20" >&2; exit 1; }
"$fixture" "$work/ckpt" >/dev/null
cxx=$("$work/build/cxx_consumer" "$work/ckpt")
c=$("$work/build/c_consumer" "$work/ckpt")
cli=$("$prefix/bin/shardload" load "$work/ckpt" --json | tail -n 1)
echo "C++: $cxx / C: $c / CLI: $cli"
[ "${cxx% *}" = "${c% *}" ] || { echo "C++ and C consumers disagree" >&2; exit 1; }
bytes=$(echo "$cxx" | cut -d' ' -f2)
tensors=$(echo "$cxx" | cut -d' ' -f1)
echo "$cli" | grep -q "\"tensors\":$tensors,\"bytes\":$bytes," ||
  { echo "consumers disagree with the installed CLI" >&2; exit 1; }
[ -f "$prefix/include/shardload/shardload.h" ] &&
  ls "$prefix"/lib*/libshardload.so.0 "$prefix"/lib/*/libshardload.so.0 2>/dev/null | grep -q . &&
  ls "$prefix"/lib*/cmake/shardload/shardloadConfigVersion.cmake \
     "$prefix"/lib/*/cmake/shardload/shardloadConfigVersion.cmake 2>/dev/null | grep -q .
echo ok
