// CancelToken (include/shardload/cancel.h): a flag plus the stop flags of
// the loads running under it.
// Thread-safe: the registry is guarded by a mutex; the flags are atomics.
#include "shardload/cancel.h"

#include <algorithm>

namespace shardload {

void CancelToken::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_.store(true, std::memory_order_release);
  for (std::atomic<bool>* stop : watched_) stop->store(true, std::memory_order_relaxed);
}

bool CancelToken::Watch(std::atomic<bool>* stop) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_.load(std::memory_order_relaxed)) return false;
  watched_.push_back(stop);
  return true;
}

void CancelToken::Unwatch(std::atomic<bool>* stop) {
  std::lock_guard<std::mutex> lock(mu_);
  watched_.erase(std::remove(watched_.begin(), watched_.end(), stop), watched_.end());
}

}  // namespace shardload
