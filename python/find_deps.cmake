# Finds what the Python module needs: Debian's python3 (interpreter and
# headers) and pybind11. Sets SHARDLOAD_PYTHON_DEPS_FOUND. Included by the
# top-level CMakeLists.txt (to pick SHARDLOAD_BUILD_PYTHON's default) and by
# python/CMakeLists.txt.
#
# The interpreter defaults to /usr/bin/python3 when it exists, so that the
# module is built for Debian's python3 (with python3-numpy) even when a
# different python3 (pyenv, venv) comes first on PATH. Override with
# -DPython3_EXECUTABLE=...
if(EXISTS /usr/bin/python3)
  set(Python3_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "Python interpreter the module is built for")
endif()
find_package(Python3 QUIET COMPONENTS Interpreter Development.Module)
if(Python3_FOUND)
  find_package(pybind11 CONFIG QUIET)
endif()
if(Python3_FOUND AND pybind11_FOUND)
  set(SHARDLOAD_PYTHON_DEPS_FOUND ON)
else()
  set(SHARDLOAD_PYTHON_DEPS_FOUND OFF)
endif()
