// Turns a SIGBUS raised by touching a file mapping (the file was truncated
// under it, or a page could not be read in) into a return value instead of
// the death of the process, for the one stretch of code that copies out of
// the mapping (io/mapped_read.h).
//
// A process-wide SIGBUS handler is installed on first use and kept in place
// (re-installed, chaining to whatever handler replaced it, each time a guard
// is armed). It recovers only a fault whose address lies inside the range
// the faulting thread armed; any other SIGBUS goes to the handler that was
// there before (the default one: the process dies as it would have).
//
// Thread-safe: each thread arms its own guard (thread-local); installing the
// handler is serialized.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shardload {

// Makes sure our handler is the installed SIGBUS handler (a system call when
// someone else replaced it). Call before RunGuarded on a thread; cheap to
// repeat.
void InstallSigbusHandler();

// Calls fn(arg) with SIGBUS on addresses [lo, hi) recovered: returns true if
// fn returned, false if such a fault cut it short (*fault_address = where).
// fn must not own resources (no destructors run when it is cut short) and
// must not arm a guard itself.
bool RunGuarded(void (*fn)(void*), void* arg, const std::byte* lo, const std::byte* hi,
                std::uintptr_t* fault_address);

}  // namespace shardload
