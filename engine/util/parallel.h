// ForEachParallel: runs fn(i) for i in [0, count) on up to `threads` plain
// threads (the caller's included), each taking the next index in order;
// ForEachParallelWorker also passes the worker's number (0 <= w < threads).
// Thread-safe if fn is safe to run concurrently for different i. Thread
// start and join give ThreadSanitizer its happens-before edges. Throws
// std::system_error when a thread cannot start (after joining the others).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace shardload {

template <typename Fn>
void ForEachParallelWorker(std::size_t count, unsigned threads, Fn&& fn) {
  std::atomic<std::size_t> next{0};
  auto work = [&](unsigned w) {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) fn(w, i);
  };
  std::size_t n = std::min<std::size_t>(std::max(1u, threads), count);
  std::vector<std::thread> pool;
  try {
    for (std::size_t t = 1; t < n; ++t) pool.emplace_back(work, static_cast<unsigned>(t));
  } catch (...) {
    next.store(count);
    for (std::thread& t : pool) t.join();
    throw;
  }
  work(0);
  for (std::thread& t : pool) t.join();
}

template <typename Fn>
void ForEachParallel(std::size_t count, unsigned threads, Fn&& fn) {
  ForEachParallelWorker(count, threads, [&](unsigned, std::size_t i) { fn(i); });
}

}  // namespace shardload
