// How a load runs under Python: RunInterruptible runs it on a thread of its
// own with the GIL released while the calling thread waits in short slices
// and checks for signals, so that Ctrl-C (KeyboardInterrupt) cancels it
// through a CancelToken; ProgressBridge calls a Python progress callback
// from the loader's worker threads.
// Thread-safety: RunInterruptible requires the GIL on entry (it holds it
// again on return); ProgressBridge's function may be called from any thread.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "shardload/cancel.h"

namespace shardload::python {

namespace py = pybind11;

// How long the waiting thread sleeps between two signal checks.
inline constexpr std::chrono::milliseconds kSignalCheckInterval{50};

// Runs F (which touches no Python object, or takes the GIL itself) on a new
// thread. When a signal handler raises while it runs (KeyboardInterrupt for
// SIGINT, in the main thread), TOKEN is cancelled, the thread is joined (F
// then returns its kCancelled error, its memory freed) and the handler's
// exception is raised. Returns what F returns; an exception F throws is
// rethrown here.
template <typename F>
auto RunInterruptible(CancelToken& token, F&& f) -> decltype(f()) {
  using R = decltype(f());
  std::optional<R> result;
  std::exception_ptr error;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;  // guarded by mu
  std::thread worker([&] {
    try {
      result.emplace(f());
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
  });
  auto wait_slice = [&] {
    py::gil_scoped_release release;
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kSignalCheckInterval, [&] { return done; });
  };
  while (!wait_slice()) {
    if (PyErr_CheckSignals() != 0) {
      token.Cancel();
      {
        py::gil_scoped_release release;
        worker.join();
      }
      throw py::error_already_set();
    }
  }
  {
    py::gil_scoped_release release;  // F has returned: a short wait
    worker.join();
  }
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

// Calls a Python progress callback (bytes_done, bytes_total) from worker
// threads. The GIL serializes the calls. The first exception the callback
// raises is kept, the callback is not called again, the load is cancelled
// through CANCEL (so it stops early), and RethrowIfFailed raises the
// exception once the load has returned.
class ProgressBridge {
 public:
  ProgressBridge(py::object callback, CancelToken& cancel)
      : callback_(std::move(callback)), cancel_(cancel) {}

  // For LoadRequest::progress. REQUIRES: this outlives the load.
  std::function<void(std::uint64_t, std::uint64_t)> Function() {
    return [this](std::uint64_t done, std::uint64_t total) { Call(done, total); };
  }

  // REQUIRES: the GIL is held and the load has returned.
  void RethrowIfFailed() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void Call(std::uint64_t done, std::uint64_t total) noexcept {
    if (failed_.load(std::memory_order_acquire)) return;
    py::gil_scoped_acquire gil;
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      callback_(done, total);
    } catch (...) {
      error_ = std::current_exception();
      failed_.store(true, std::memory_order_release);
      cancel_.Cancel();
    }
  }

  py::object callback_;
  CancelToken& cancel_;
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // guarded by the GIL
};

}  // namespace shardload::python
