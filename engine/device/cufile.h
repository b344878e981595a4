// The cuFile (GPUDirect Storage) entry points the device stage uses, resolved
// at run time with dlopen/dlsym: no build or link dependency on libcufile.
// The library is $SHARDLOAD_CUFILE when set (the tests point it at
// tests/device's fake), else the first of libcufile.so.0, libcufile.so that
// loads. A CuFileSession is one opened driver (cuFileDriverOpen), shared by
// every Loader of the process that uses the same library: the driver session
// is per process, so it is closed (cuFileDriverClose) when the last holder
// lets go, never under another Loader's reads.
// Thread-safe: a session is immutable after Open; cuFile's entry points are
// thread-safe; Open serializes on a process-wide mutex.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

#include "shardload/error.h"

namespace shardload {

// CUfileError_t: a CUfileOpError (0 = CU_FILE_SUCCESS, else 5000 + n) and,
// for CU_FILE_CUDA_DRIVER_ERROR, the CUresult.
struct CuFileStatus {
  int err = 0;
  int cu_err = 0;
};
inline constexpr int kCuFileSuccess = 0;
inline constexpr int kCuFileCudaDriverError = 5011;

// CUfileDescr_t with type CU_FILE_HANDLE_TYPE_OPAQUE_FD (1).
struct CuFileDescr {
  int type = 1;
  union {
    int fd;
    void* handle;
  } handle{};
  const void* fs_ops = nullptr;
};
using CuFileHandle = void*;

// The first fields of CUfileDrvProps_t (read into a larger zeroed buffer, so
// fields a later release appends are harmless).
struct CuFileDriverProps {
  unsigned nvfs_major = 0;
  unsigned nvfs_minor = 0;
  std::size_t poll_thresh_size = 0;
  std::size_t max_direct_io_size = 0;
  unsigned dstatusflags = 0;   // bit per storage type the driver supports
  unsigned dcontrolflags = 0;  // bit 1: compatibility mode allowed
};

struct CuFileSession {
  // Loads the library, resolves the entry points, opens the driver and
  // checks that it would do GPUDirect reads (not only its compatibility
  // mode: cuFileGetParameterBool(FORCE_COMPAT_MODE), where present, and the
  // driver properties). Errors: kUnsupported saying why (the reason a load
  // then falls back to staging).
  static Result<std::shared_ptr<const CuFileSession>> Open();

  CuFileSession() = default;
  CuFileSession(const CuFileSession&) = delete;
  CuFileSession& operator=(const CuFileSession&) = delete;
  ~CuFileSession();  // cuFileDriverClose (if opened), dlclose

  // "cuFileHandleRegister: CU_FILE_IO_NOT_SUPPORTED (cuFile error 5008)".
  std::string Describe(const std::string& what, CuFileStatus status) const;

  void* library = nullptr;
  std::string library_name;
  bool driver_open = false;
  CuFileDriverProps props;

  CuFileStatus (*driver_open_fn)() = nullptr;
  CuFileStatus (*driver_close)() = nullptr;  // cuFileDriverClose_v2, else cuFileDriverClose
  CuFileStatus (*driver_get_properties)(void*) = nullptr;
  CuFileStatus (*handle_register)(CuFileHandle*, CuFileDescr*) = nullptr;
  void (*handle_deregister)(CuFileHandle) = nullptr;
  CuFileStatus (*buf_register)(const void*, std::size_t, int) = nullptr;
  CuFileStatus (*buf_deregister)(const void*) = nullptr;
  ssize_t (*read)(CuFileHandle, void*, std::size_t, off_t, off_t) = nullptr;
  // Optional (GDS 1.14+): nullptr when absent.
  CuFileStatus (*get_parameter_bool)(int, bool*) = nullptr;
};

// The name of a CUfileOpError ("CU_FILE_DRIVER_NOT_INITIALIZED"), or
// "cuFile error N" for one this build does not know.
std::string CuFileErrorName(int err);

}  // namespace shardload
