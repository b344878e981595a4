// The loader's one guard against allocation failure: std::bad_alloc thrown
// anywhere under a public call (or a load worker, a cuFile thread) becomes
// kResourceExhausted ("out of memory") at that boundary.
// Thread-safe: pure functions.
#pragma once

#include <new>
#include <utility>

#include "shardload/error.h"

namespace shardload {

inline Error OutOfMemory() {
  return MakeError(ErrorCode::kResourceExhausted, "", "", "out of memory");
}

// BODY(), or kResourceExhausted when it runs out of memory. BODY returns a
// Result<T> or a Status.
template <typename Body>
auto GuardMemory(Body&& body) -> decltype(body()) {
  using R = decltype(body());
  try {
    return std::forward<Body>(body)();
  } catch (const std::bad_alloc&) {
    return R(OutOfMemory());
  }
}

}  // namespace shardload
