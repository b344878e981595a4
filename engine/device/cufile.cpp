// CuFileSession::Open: dlopen of libcufile, dlsym of each entry point, the
// driver opened once per process and library (cufile.h).
// Thread-safe: Open and the last release serialize on one mutex.
#include "device/cufile.h"

#include <dlfcn.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace shardload {
namespace {

constexpr int kForceCompatMode = 2;        // CUFILE_PARAM_FORCE_COMPAT_MODE
constexpr std::size_t kPropsBuffer = 512;  // > sizeof(CUfileDrvProps_t) of any release

Error Unsupported(std::string detail) {
  return MakeError(ErrorCode::kUnsupported, "", "", std::move(detail));
}

// The candidates, in order: $SHARDLOAD_CUFILE alone when set.
std::vector<std::string> Candidates() {
  if (const char* forced = std::getenv("SHARDLOAD_CUFILE"); forced != nullptr && *forced) {
    return {forced};
  }
  return {"libcufile.so.0", "libcufile.so"};
}

template <typename F>
void Resolve(void* library, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(::dlsym(library, name));
  if (out == nullptr && missing.empty()) missing = name;
}

// Every required entry point, or the name of the first one missing.
std::string ResolveAll(CuFileSession& s) {
  std::string missing;
  void* l = s.library;
  Resolve(l, "cuFileDriverOpen", s.driver_open_fn, missing);
  s.driver_close = reinterpret_cast<decltype(s.driver_close)>(::dlsym(l, "cuFileDriverClose_v2"));
  if (s.driver_close == nullptr) Resolve(l, "cuFileDriverClose", s.driver_close, missing);
  Resolve(l, "cuFileDriverGetProperties", s.driver_get_properties, missing);
  Resolve(l, "cuFileHandleRegister", s.handle_register, missing);
  Resolve(l, "cuFileHandleDeregister", s.handle_deregister, missing);
  Resolve(l, "cuFileBufRegister", s.buf_register, missing);
  Resolve(l, "cuFileBufDeregister", s.buf_deregister, missing);
  Resolve(l, "cuFileRead", s.read, missing);
  s.get_parameter_bool =
      reinterpret_cast<decltype(s.get_parameter_bool)>(::dlsym(l, "cuFileGetParameterBool"));
  return missing;
}

// Why GDS would only run in compatibility mode (a POSIX read into a bounce
// buffer, then a copy: what the staged path does, better), or "".
std::string CompatOnly(CuFileSession& s) {
  bool forced = false;
  if (s.get_parameter_bool != nullptr &&
      s.get_parameter_bool(kForceCompatMode, &forced).err == kCuFileSuccess && forced) {
    return "cuFile is configured to force compatibility mode (FORCE_COMPAT_MODE)";
  }
  alignas(8) std::array<unsigned char, kPropsBuffer> raw{};
  CuFileStatus st = s.driver_get_properties(raw.data());
  if (st.err != kCuFileSuccess) return "";  // cannot tell: let the reads decide
  std::memcpy(&s.props, raw.data(), sizeof(s.props));
  if (s.props.nvfs_major == 0 && s.props.nvfs_minor == 0 && s.props.dstatusflags == 0) {
    return "the cuFile driver reports no nvidia-fs and no storage type it reads directly "
           "(compatibility mode only)";
  }
  return "";
}

// The live session (weak: the last holder closes it). Recursive: Open holds
// it throughout, and a session it drops (a failed open) closes under it.
std::recursive_mutex g_mu;
std::weak_ptr<const CuFileSession> g_session;

}  // namespace

CuFileSession::~CuFileSession() {
  std::lock_guard lock(g_mu);  // no Open races a closing driver
  if (driver_open) (void)driver_close();
  if (library != nullptr) ::dlclose(library);
}

Result<std::shared_ptr<const CuFileSession>> CuFileSession::Open() {
  const std::vector<std::string> names = Candidates();
  std::lock_guard lock(g_mu);  // a closing session's driver_close waits for it
  if (auto live = g_session.lock(); live && live->library_name == names.front()) return live;
  auto s = std::make_shared<CuFileSession>();
  std::string tried;
  for (const std::string& name : names) {
    s->library = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (s->library != nullptr) {
      s->library_name = name;
      break;
    }
    const char* why = ::dlerror();
    tried += (tried.empty() ? "" : "; ") + (why != nullptr ? std::string(why) : name);
  }
  if (s->library == nullptr) return Unsupported("libcufile not found: " + tried);
  if (std::string missing = ResolveAll(*s); !missing.empty()) {
    return Unsupported(s->library_name + " lacks the entry point " + missing);
  }
  if (CuFileStatus st = s->driver_open_fn(); st.err != kCuFileSuccess) {
    return Unsupported(s->Describe("cuFileDriverOpen", st));
  }
  s->driver_open = true;
  if (std::string compat = CompatOnly(*s); !compat.empty()) return Unsupported(compat);
  g_session = s;
  return std::shared_ptr<const CuFileSession>(std::move(s));
}

std::string CuFileSession::Describe(const std::string& what, CuFileStatus status) const {
  std::string out = what + ": " + CuFileErrorName(status.err) + " (cuFile error " +
                    std::to_string(status.err) + ")";
  if (status.err == kCuFileCudaDriverError) out += ", CUresult " + std::to_string(status.cu_err);
  return out;
}

std::string CuFileErrorName(int err) {
  static constexpr const char* kNames[] = {
      "CU_FILE_DRIVER_NOT_INITIALIZED", "CU_FILE_DRIVER_INVALID_PROPS",
      "CU_FILE_DRIVER_UNSUPPORTED_LIMIT", "CU_FILE_DRIVER_VERSION_MISMATCH",
      "CU_FILE_DRIVER_VERSION_READ_ERROR", "CU_FILE_DRIVER_CLOSING",
      "CU_FILE_PLATFORM_NOT_SUPPORTED", "CU_FILE_IO_NOT_SUPPORTED",
      "CU_FILE_DEVICE_NOT_SUPPORTED", "CU_FILE_NVFS_DRIVER_ERROR", "CU_FILE_CUDA_DRIVER_ERROR",
      "CU_FILE_CUDA_POINTER_INVALID", "CU_FILE_CUDA_MEMORY_TYPE_INVALID",
      "CU_FILE_CUDA_POINTER_RANGE_ERROR", "CU_FILE_CUDA_CONTEXT_MISMATCH",
      "CU_FILE_INVALID_MAPPING_SIZE", "CU_FILE_INVALID_MAPPING_RANGE",
      "CU_FILE_INVALID_FILE_TYPE", "CU_FILE_INVALID_FILE_OPEN_FLAG", "CU_FILE_DIO_NOT_SET",
      "CU_FILE_EXPECTED_FILE_MODE", "CU_FILE_INVALID_VALUE", "CU_FILE_MEMORY_ALREADY_REGISTERED",
      "CU_FILE_MEMORY_NOT_REGISTERED", "CU_FILE_PERMISSION_DENIED",
      "CU_FILE_DRIVER_ALREADY_OPEN", "CU_FILE_HANDLE_NOT_REGISTERED",
      "CU_FILE_HANDLE_ALREADY_REGISTERED", "CU_FILE_DEVICE_NOT_FOUND", "CU_FILE_INTERNAL_ERROR",
      "CU_FILE_GETNEWFD_FAILED"};  // 5001 .. 5031
  if (err == kCuFileSuccess) return "CU_FILE_SUCCESS";
  const int i = err - 5001;
  if (i >= 0 && i < static_cast<int>(std::size(kNames))) return kNames[i];
  if (err == 5033) return "CU_FILE_NVFS_SETUP_ERROR";
  if (err == 5034) return "CU_FILE_IO_DISABLED";
  if (err == 5036) return "CU_FILE_GPU_MEMORY_PINNING_FAILED";
  if (err == 5044) return "CU_FILE_IO_ERROR";
  return "cuFile error " + std::to_string(err);
}

}  // namespace shardload
