# Initial cache (cmake -C) of a packaged build: setup.py (the wheel, `pip
# install .`) and tools/make-deb.sh (the .deb) both configure with it, so
# that one Release build directory can serve both. Installs under /usr with
# the Python package in Debian's /usr/lib/python3/dist-packages.
set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type")
set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix")
set(SHARDLOAD_PYTHON_INSTALL_DIR lib/python3/dist-packages CACHE STRING "Python site directory")
set(SHARDLOAD_BUILD_TESTS OFF CACHE BOOL "Build the test suite")
set(SHARDLOAD_BUILD_PERF OFF CACHE BOOL "Build the benchmarks")
set(SHARDLOAD_BUILD_TOOLS ON CACHE BOOL "Build the CLI")
set(SHARDLOAD_BUILD_PYTHON ON CACHE BOOL "Build the Python module")
set(SHARDLOAD_WERROR OFF CACHE BOOL "Warnings as errors")
