// Fault injection for the load engine: FaultyBackend wraps a real IoBackend
// (UringBackend or PreadBackend) and gives each of its workers a
// FaultInjector, the CompletionFilter of io/completion.h. From a seed, the
// injector rewrites read results the kernel returned: short reads of random
// lengths, zero-length reads, -EAGAIN, -EINTR, -EIO and -ECANCELED; for
// io_uring it also shuffles each batch of completions and holds some back
// for later reaps. The bytes a rewrite takes away from a read are
// overwritten with garbage, as a failed read may leave them, so a backend
// that skipped a resubmission would deliver wrong bytes. The real backend's
// own retry, resubmit and cancel code is what runs under these faults. Every
// rewrite is logged, with what the completion policy was handed, so a test
// can predict the outcome.
// Thread-safe: FaultyBackend::Execute runs on many workers at once; the log
// is locked; each injector belongs to one worker.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "io/completion.h"
#include "io/io_backend.h"

namespace shardload::test {

enum class FaultKind { kShortRead, kZeroRead, kEagain, kEintr, kEio, kEcanceled };
inline constexpr int kNumFaultKinds = 6;

const char* FaultKindName(FaultKind kind);
// The faults that must stop a load: a zero-length read (EOF before the
// planned end), EIO and ECANCELED.
bool IsFatal(FaultKind kind);

// Chance, per read result, of each fault (they are exclusive; the sum must
// be at most 1), and for io_uring the chance that a completion is held back.
struct FaultRates {
  double short_read = 0;
  double zero_read = 0;
  double eagain = 0;
  double eintr = 0;
  double eio = 0;
  double ecanceled = 0;
  double hold = 0;
  // Inject EAGAIN/EINTR only while the read is below the policy's retry
  // limit (kMaxRetries), so that retryable faults alone never fail a load.
  bool bounded_retries = true;
};

struct InjectedFault {
  FaultKind kind = FaultKind::kShortRead;
  unsigned worker = 0;            // the injector's number (order of start)
  std::uint32_t file = 0;         // ReadOp::file
  std::uint64_t op_offset = 0;    // ReadOp::offset
  std::uint64_t op_length = 0;    // ReadOp::length
  std::uint64_t read_offset = 0;  // where this read started (cursor.offset)
  std::int64_t system_res = 0;    // what the system returned
  std::int64_t injected_res = 0;  // what the completion policy was handed
};

// What the completion policy was handed, summed over a load's workers: on
// success, the LoadStats counters must equal these.
struct PolicyInputs {
  std::uint64_t bytes = 0;        // positive results (bytes_read)
  std::uint64_t short_reads = 0;  // short of `required`, beyond earlier ends (short_reads)
  std::uint64_t retries = 0;      // -EAGAIN and -EINTR (retries)
  std::uint64_t first_reads = 0;  // the first result of each op (read_ops)
  std::uint64_t held = 0;         // io_uring completions held back for a later reap
  std::uint64_t reaps = 0;        // io_uring batches dealt out
};

// The faults of one load. Thread-safe.
class FaultLog {
 public:
  unsigned StartWorker();
  void Add(const InjectedFault& fault);
  void Count(const PolicyInputs& inputs);
  std::vector<InjectedFault> faults() const;
  PolicyInputs inputs() const;

 private:
  mutable std::mutex mu_;
  unsigned workers_ = 0;
  std::vector<InjectedFault> faults_;
  PolicyInputs inputs_;
};

// One worker's filter. Thread-compatible.
class FaultInjector final : public CompletionFilter {
 public:
  FaultInjector(std::uint64_t seed, const FaultRates& rates, unsigned worker, FaultLog& log);

  std::int64_t Rewrite(const ReadOp& op, const OpCursor& cursor, std::byte* buf,
                       std::int64_t res) override;
  void Arrive(std::uint64_t user_data, std::int32_t res) override;
  bool Next(unsigned in_kernel, std::uint64_t* user_data, std::int32_t* res) override;

  const PolicyInputs& inputs() const { return inputs_; }

 private:
  using Completion = std::pair<std::uint64_t, std::int32_t>;
  std::int64_t Inject(FaultKind kind, const ReadOp& op, const OpCursor& cursor,
                      std::int64_t res);
  void Account(const ReadOp& op, const OpCursor& cursor, std::int64_t res);
  void Deal(unsigned in_kernel);
  double Uniform();

  std::mt19937_64 rng_;
  const FaultRates rates_;
  const unsigned worker_;
  FaultLog& log_;
  PolicyInputs inputs_;
  std::vector<Completion> arrived_;  // this reap, not yet dealt
  std::vector<Completion> held_;     // kept for a later reap
  std::vector<Completion> ready_;    // to hand back now (from the back)
};

// Runs `inner` with a FaultInjector per worker, seeded from `seed` and the
// worker's number (so a worker's fault stream does not depend on which
// thread runs it; which ops it meets depends on how the OpQueue balances).
// name() is the inner backend's.
class FaultyBackend final : public IoBackend {
 public:
  // REQUIRES: `inner` outlives this object.
  FaultyBackend(const IoBackend& inner, std::uint64_t seed, const FaultRates& rates);

  Status Execute(WorkerOps& ops, const ExecContext& ctx, WorkerStats& stats) const override;
  const char* name() const override { return inner_.name(); }

  const FaultLog& log() const { return log_; }

 private:
  const IoBackend& inner_;
  const std::uint64_t seed_;
  const FaultRates rates_;
  mutable FaultLog log_;
};

// splitmix64: derives independent seeds from one.
std::uint64_t MixSeed(std::uint64_t a, std::uint64_t b);

}  // namespace shardload::test
