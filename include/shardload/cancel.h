// CancelToken: lets a caller stop loads that are running or about to run.
// Give the token to LoadOptions::cancel; Cancel() from any thread makes every
// load using it fail with ErrorCode::kCancelled ("cancelled by the caller"):
// a running load's workers stop at their next read completion (reads in
// flight are drained, nothing new is submitted) and the load frees its
// memory before returning; a load not yet reading stops at its next phase
// (open, plan, read). A cancelled token stays cancelled.
// Thread-safe: Cancel(), cancelled() and the loader's Watch/Unwatch may be
// called concurrently from any threads.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

namespace shardload {

class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Cancels every load using this token, now and later.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // For the loader: Watch registers a running load's stop flag, which
  // Cancel() sets; it returns false (and registers nothing) when the token
  // is already cancelled. Unwatch removes the flag; after it returns,
  // Cancel() no longer touches the flag.
  bool Watch(std::atomic<bool>* stop);
  void Unwatch(std::atomic<bool>* stop);

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::vector<std::atomic<bool>*> watched_;  // guarded by mu_
};

}  // namespace shardload
