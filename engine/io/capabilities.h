// Probes what this kernel and process allow, once, and says why: is io_uring
// usable (ENOSYS on old or stripped kernels, EPERM under container seccomp
// profiles or kernel.io_uring_disabled), which ring flags it takes.
// Thread-safe: ProbeCapabilities has no shared state.
#pragma once

#include <string>

namespace shardload {

struct Capabilities {
  bool io_uring = false;        // a ring can be set up and reads are supported
  std::string io_uring_reason;  // why io_uring is or is not usable, in words
  bool defer_taskrun = false;   // SINGLE_ISSUER | DEFER_TASKRUN accepted
};

// Sets up (and tears down) a small ring to find out.
Capabilities ProbeCapabilities();

}  // namespace shardload
