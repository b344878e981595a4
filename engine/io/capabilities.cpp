// The io_uring probe.
// Thread-safe.
#include "io/capabilities.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/uring.h"

namespace shardload {
namespace {

// kernel.io_uring_disabled: 0 allowed, 1 only for io_uring_group, 2 never.
// -1 when the sysctl does not exist (kernels before 6.6).
int IoUringDisabledSysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int value = -1;
  if (in) in >> value;
  return in ? value : -1;
}

std::string SetupFailure(int err) {
  std::string why = std::string("io_uring_setup failed: ") + std::strerror(err);
  int sysctl = IoUringDisabledSysctl();
  if (err == ENOSYS) return why + " (ENOSYS: kernel built without io_uring)";
  if (err == EPERM) {
    if (sysctl > 0) {
      return why + " (EPERM: kernel.io_uring_disabled=" + std::to_string(sysctl) + ")";
    }
    return why + " (EPERM: blocked by a seccomp profile, as in default container runtimes)";
  }
  if (err == ENOMEM) return why + " (ENOMEM: locked-memory limit, RLIMIT_MEMLOCK?)";
  return why;
}

}  // namespace

Capabilities ProbeCapabilities() {
  Capabilities caps;
  Ring ring;
  int ret = ring.Init(4);
  if (ret < 0) {
    caps.io_uring_reason = SetupFailure(-ret);
    return caps;
  }
  caps.defer_taskrun = ring.setup_flags() == kPreferredRingFlags;
  io_uring_probe* probe = io_uring_get_probe_ring(ring.get());
  bool read_ok = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_READ);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!read_ok) {
    caps.io_uring_reason = "io_uring lacks IORING_OP_READ (kernel before 5.6)";
    return caps;
  }
  caps.io_uring = true;
  caps.io_uring_reason = std::string("io_uring available (") +
                         (caps.defer_taskrun ? "SINGLE_ISSUER|DEFER_TASKRUN rings"
                                             : "plain rings: DEFER_TASKRUN refused") +
                         ")";
  return caps;
}

}  // namespace shardload
