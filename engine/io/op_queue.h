// Hands the ReadOps of one load to its workers, balancing them as the load
// runs rather than only up front.
//
// The read planner gives each worker a share: a contiguous run of the plan in
// (file, offset) order, of about equal bytes. Equal bytes are not equal time:
// page faults on fresh memory cost what the host charges, region by region,
// and the memory behind one share can be slower than another's. So:
//
//   * a worker takes the ops of its own share from the front, in file order;
//   * a worker whose share is used up steals the back half of the ops not yet
//     taken from the share with the most left, and makes them its own share.
//
//        w0 [################]  w1 [######..........]    (# taken)
//        w0's share is done; it steals the back half of what w1 has left:
//                                w1 [######.....]  w0 [.....]
//
// Each worker still reads forward through a file (sequential for readahead
// and the disk), and no worker idles while another has ops waiting. An op is
// taken exactly once.
//
// Thread-safe: Take runs concurrently on every worker; each share is one
// atomic word (front and back index), changed by compare-and-swap.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "plan/read_op.h"

namespace shardload {

class OpQueue {
 public:
  static constexpr std::size_t kNone = ~std::size_t{0};

  // `bounds` has one entry per worker plus one: worker w's share is
  // ops[bounds[w], bounds[w + 1]). REQUIRES: bounds ascending from 0 to
  // ops.size() < kMaxPlanOps; `ops` outlives the queue.
  OpQueue(std::span<const ReadOp> ops, std::span<const std::size_t> bounds);

  // The index of the next op for `worker`, or kNone when no op is left in any
  // share.
  std::size_t Take(unsigned worker);

  const ReadOp& op(std::size_t index) const { return ops_[index]; }
  std::size_t size() const { return ops_.size(); }
  // Ops taken so far by stealing (counted per stolen op).
  std::uint64_t stolen() const { return stolen_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Share {
    std::atomic<std::uint64_t> range{0};  // front (low 32 bits), back (high 32 bits)
  };

  // Moves the back half of the fullest other share into `worker`'s share;
  // false when every other share is empty.
  bool Steal(unsigned worker);

  std::span<const ReadOp> ops_;
  unsigned workers_;
  std::unique_ptr<Share[]> shares_;
  std::atomic<std::uint64_t> stolen_{0};
};

// One worker's end of an OpQueue: what a backend's Execute reads from.
// Thread-compatible: belongs to one worker.
class WorkerOps {
 public:
  WorkerOps(OpQueue& queue, unsigned worker) : queue_(&queue), worker_(worker) {}

  // The next op's index, or OpQueue::kNone when all are taken.
  std::size_t Next() { return queue_->Take(worker_); }
  const ReadOp& op(std::size_t index) const { return queue_->op(index); }
  // Ops in the whole plan: an upper bound on what this worker can get.
  std::size_t plan_size() const { return queue_->size(); }
  unsigned worker() const { return worker_; }

 private:
  OpQueue* queue_;
  unsigned worker_;
};

}  // namespace shardload
