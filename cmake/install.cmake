# `cmake --install`: the public headers, the engine's static libraries behind
# shardload::shardload, libshardload.so (shardload::c), the CLI (tools/) and
# the Python package (python/), plus the CMake package files:
# <libdir>/cmake/shardload/{shardloadConfig,shardloadConfigVersion,
# shardloadTargets}.cmake, so that a consumer writes
#   find_package(shardload 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE shardload::shardload)   # C++ API
#   target_link_libraries(app PRIVATE shardload::c)           # C ABI
include(CMakePackageConfigHelpers)

set(SHARDLOAD_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/shardload
    CACHE STRING "Where shardloadConfig.cmake is installed (relative: under the prefix)")

get_property(_stages GLOBAL PROPERTY SHARDLOAD_STAGES)
install(TARGETS shardload shardload_c ${_stages}
  EXPORT shardloadTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/shardload
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(EXPORT shardloadTargets NAMESPACE shardload::
  DESTINATION ${SHARDLOAD_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/shardloadConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shardloadConfig.cmake
  INSTALL_DESTINATION ${SHARDLOAD_INSTALL_CMAKEDIR})
# 0.x: a minor version may break the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/shardloadConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shardloadConfig.cmake
              ${PROJECT_BINARY_DIR}/shardloadConfigVersion.cmake
  DESTINATION ${SHARDLOAD_INSTALL_CMAKEDIR})
