// SIGBUS guard (see sigbus_guard.h): sigsetjmp before the guarded call, the
// handler siglongjmps back when the fault is inside the armed range.
// Thread-safe: the armed range is thread-local; the previous handler is
// published under a mutex and read by the handler (written before ours is
// installed, so the handler never sees it half-written).
#include "io/sigbus_guard.h"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <mutex>

namespace shardload {
namespace {

struct Armed {
  sigjmp_buf jump;
  std::uintptr_t lo = 0, hi = 0;
  std::uintptr_t fault = 0;
  bool active = false;
};

thread_local Armed t_armed;

std::mutex g_install_mutex;
struct sigaction g_previous;  // the handler ours chains to

void OnSigbus(int sig, siginfo_t* info, void* context) {
  Armed& armed = t_armed;
  const auto at = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (armed.active && at >= armed.lo && at < armed.hi) {
    armed.active = false;
    armed.fault = at;
    siglongjmp(armed.jump, 1);
  }
  // Not ours: as if we had not been there.
  const struct sigaction& prev = g_previous;
  if ((prev.sa_flags & SA_SIGINFO) != 0 && prev.sa_sigaction != nullptr) {
    return prev.sa_sigaction(sig, info, context);
  }
  if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) return prev.sa_handler(sig);
  // Default (or ignored, which cannot hold for a fault): restore it and
  // return, so the faulting instruction faults again and the default action
  // (terminate, core) takes place.
  signal(SIGBUS, SIG_DFL);
}

bool OursInstalled() {
  struct sigaction current = {};
  sigaction(SIGBUS, nullptr, &current);
  return (current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == &OnSigbus;
}

}  // namespace

void InstallSigbusHandler() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  if (OursInstalled()) return;
  struct sigaction ours = {};
  ours.sa_sigaction = &OnSigbus;
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  struct sigaction previous = {};
  sigaction(SIGBUS, nullptr, &previous);
  g_previous = previous;
  sigaction(SIGBUS, &ours, nullptr);
}

bool RunGuarded(void (*fn)(void*), void* arg, const std::byte* lo, const std::byte* hi,
                std::uintptr_t* fault_address) {
  Armed& armed = t_armed;
  armed.lo = reinterpret_cast<std::uintptr_t>(lo);
  armed.hi = reinterpret_cast<std::uintptr_t>(hi);
  // savemask = 1: the jump out of the handler restores the signal mask, so
  // SIGBUS is not left blocked on this thread.
  if (sigsetjmp(armed.jump, 1) != 0) {
    *fault_address = armed.fault;
    return false;
  }
  armed.active = true;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  fn(arg);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  armed.active = false;
  return true;
}

}  // namespace shardload
