// CancelWatch: registers a load's stop flag with the caller's CancelToken
// (LoadOptions::cancel) for as long as it lives, so that Cancel() stops the
// load's workers; a token already cancelled sets the flag at once.
// Thread-compatible: one per load, on the thread that runs it.
#pragma once

#include <atomic>

#include "shardload/cancel.h"

namespace shardload {

class CancelWatch {
 public:
  CancelWatch(CancelToken* token, std::atomic<bool>* stop) : token_(token), stop_(stop) {
    if (token_ != nullptr && !token_->Watch(stop_)) {
      stop_->store(true, std::memory_order_relaxed);
      token_ = nullptr;
    }
  }
  ~CancelWatch() {
    if (token_ != nullptr) token_->Unwatch(stop_);
  }
  CancelWatch(const CancelWatch&) = delete;
  CancelWatch& operator=(const CancelWatch&) = delete;

 private:
  CancelToken* token_;
  std::atomic<bool>* stop_;
};

}  // namespace shardload
