// OpQueue (io/op_queue.h): owners take their shares in file order, thieves
// take the back half of the fullest share, every op is taken exactly once,
// also with many threads at once (run under TSan by the test script).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "io/op_queue.h"
#include "support/test_util.h"

namespace shardload {
namespace {

std::vector<std::size_t> Drain(OpQueue& queue, unsigned worker) {
  std::vector<std::size_t> taken;
  for (std::size_t i = queue.Take(worker); i != OpQueue::kNone; i = queue.Take(worker)) {
    taken.push_back(i);
  }
  return taken;
}

TEST_CASE("one worker takes its share in order") {
  std::vector<ReadOp> ops(5);
  std::vector<std::size_t> bounds{0, 5};
  OpQueue queue(ops, bounds);
  CHECK(Drain(queue, 0) == std::vector<std::size_t>{0, 1, 2, 3, 4});
  CHECK(queue.Take(0) == OpQueue::kNone);
  CHECK(queue.stolen() == 0);
}

TEST_CASE("a worker out of ops steals the back half of the other share, then reads forward") {
  std::vector<ReadOp> ops(12);
  std::vector<std::size_t> bounds{0, 4, 12};
  OpQueue queue(ops, bounds);
  // Worker 0 finishes [0, 4) while worker 1 has not started on [4, 12):
  // it steals [8, 12), then [6, 8), then [5, 6), then the last op, 4.
  CHECK(Drain(queue, 0) ==
        std::vector<std::size_t>{0, 1, 2, 3, 8, 9, 10, 11, 6, 7, 5, 4});
  CHECK(queue.Take(1) == OpQueue::kNone);
  CHECK(queue.stolen() == 8);
}

TEST_CASE("the owner keeps the front while a thief takes the back") {
  std::vector<ReadOp> ops(10);
  std::vector<std::size_t> bounds{0, 0, 10};  // worker 0 starts with nothing
  OpQueue queue(ops, bounds);
  CHECK(queue.Take(1) == 0);
  CHECK(queue.Take(1) == 1);
  CHECK(queue.Take(0) == 6);  // 8 left in [2, 10): the thief gets [6, 10)
  CHECK(queue.Take(1) == 2);
  CHECK(queue.Take(0) == 7);
  // [3, 6), then the back half of worker 0's [8, 10), then the last op.
  CHECK(Drain(queue, 1) == std::vector<std::size_t>{3, 4, 5, 9, 8});
  CHECK(queue.Take(0) == OpQueue::kNone);
}

TEST_CASE("a thief picks the share with the most ops left") {
  std::vector<ReadOp> ops(10);
  std::vector<std::size_t> bounds{0, 0, 2, 10};
  OpQueue queue(ops, bounds);
  CHECK(queue.Take(0) == 6);  // from worker 2's 8, not worker 1's 2
}

TEST_CASE("no ops: every worker gets kNone") {
  std::vector<ReadOp> ops;
  std::vector<std::size_t> bounds{0, 0, 0};
  OpQueue queue(ops, bounds);
  CHECK(queue.Take(0) == OpQueue::kNone);
  CHECK(queue.Take(1) == OpQueue::kNone);
}

TEST_CASE("concurrent workers take every op exactly once") {
  std::mt19937_64 rng(test::Seed());
  for (int round = 0; round < 20; ++round) {
    const unsigned workers = 2 + static_cast<unsigned>(rng() % 7);
    const std::size_t n = rng() % 5000;
    std::vector<ReadOp> ops(n);
    // Uneven shares: random cut points.
    std::vector<std::size_t> bounds{0};
    for (unsigned w = 1; w < workers; ++w) bounds.push_back(n == 0 ? 0 : rng() % (n + 1));
    std::sort(bounds.begin(), bounds.end());
    bounds.push_back(n);
    OpQueue queue(ops, bounds);
    std::vector<std::vector<std::size_t>> taken(workers);
    std::atomic<unsigned> ready{0};
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        ready.fetch_add(1);
        while (ready.load() < workers) std::this_thread::yield();
        taken[w] = Drain(queue, w);
      });
    }
    for (std::thread& t : threads) t.join();
    std::vector<int> count(n, 0);
    for (const auto& list : taken) {
      for (std::size_t i : list) {
        REQUIRE(i < n);
        ++count[i];
      }
    }
    CHECK(std::all_of(count.begin(), count.end(), [](int c) { return c == 1; }));
  }
}

}  // namespace
}  // namespace shardload
