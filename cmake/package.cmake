# `cpack -G DEB` (tools/make-deb.sh): one Debian package of everything
# `cmake --install` installs (cmake/install.cmake), named
# shardload_<PROJECT_VERSION>_<arch>.deb. Depends: the shared libraries the
# CLI, libshardload.so and the Python extension link (found by
# dpkg-shlibdeps, from dpkg-dev) plus the Python the extension was built for
# and numpy. The -dev packages that find_package(shardload) needs for the
# static libraries (cmake/shardloadConfig.cmake.in) are recommended.
set(CPACK_PACKAGE_NAME shardload)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "shardload")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "parallel, validating loader for sharded safetensors checkpoints")
set(CPACK_PACKAGE_DESCRIPTION
    "Loads sharded safetensors checkpoints in parallel with io_uring, whole or one
tensor-parallel rank's slices. The shardload command, the C ABI (libshardload.so.0),
the C++ API (static libraries, headers, CMake package) and the Python package.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "shardload maintainers <shardload@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(_deb_depends "")
if(SHARDLOAD_BUILD_PYTHON)  # the extension is built for this Python's minor version
  set(_py ${Python3_VERSION_MAJOR}.${Python3_VERSION_MINOR})
  math(EXPR _py_next "${Python3_VERSION_MINOR} + 1")
  set(_deb_depends "python3 (>= ${_py}), python3 (<< ${Python3_VERSION_MAJOR}.${_py_next}), python3-numpy")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${_deb_depends}")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
    "cmake, pkg-config, g++, libtbb-dev, libfmt-dev, liburing-dev, libre2-dev, libssl-dev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "python3-torch, python3-tqdm")
set(CPACK_GENERATOR DEB)
include(CPack)
