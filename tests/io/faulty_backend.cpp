// FaultInjector and FaultyBackend: seeded faults at the completion level of
// the real backends.
#include "io/faulty_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace shardload::test {

const char* FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kShortRead: return "short read";
    case FaultKind::kZeroRead: return "zero-length read";
    case FaultKind::kEagain: return "EAGAIN";
    case FaultKind::kEintr: return "EINTR";
    case FaultKind::kEio: return "EIO";
    case FaultKind::kEcanceled: return "ECANCELED";
  }
  return "?";
}

bool IsFatal(FaultKind kind) {
  return kind == FaultKind::kZeroRead || kind == FaultKind::kEio ||
         kind == FaultKind::kEcanceled;
}

std::uint64_t MixSeed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// --- FaultLog ----------------------------------------------------------------

unsigned FaultLog::StartWorker() {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_++;
}

void FaultLog::Add(const InjectedFault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.push_back(fault);
}

void FaultLog::Count(const PolicyInputs& in) {
  std::lock_guard<std::mutex> lock(mu_);
  inputs_.bytes += in.bytes;
  inputs_.short_reads += in.short_reads;
  inputs_.retries += in.retries;
  inputs_.first_reads += in.first_reads;
  inputs_.held += in.held;
  inputs_.reaps += in.reaps;
}

std::vector<InjectedFault> FaultLog::faults() const {
  std::lock_guard<std::mutex> lock(mu_);
  return faults_;
}

PolicyInputs FaultLog::inputs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return inputs_;
}

// --- FaultInjector -----------------------------------------------------------

FaultInjector::FaultInjector(std::uint64_t seed, const FaultRates& rates, unsigned worker,
                             FaultLog& log)
    : rng_(seed), rates_(rates), worker_(worker), log_(log) {}

double FaultInjector::Uniform() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

std::int64_t FaultInjector::Rewrite(const ReadOp& op, const OpCursor& cursor, std::byte* buf,
                                    std::int64_t res) {
  std::int64_t out = res;
  // Only successful reads are rewritten: a real error or EOF is never hidden.
  if (res > 0) {
    const double u = Uniform();
    const double bounds[kNumFaultKinds] = {rates_.short_read, rates_.zero_read, rates_.eagain,
                                           rates_.eintr,      rates_.eio,       rates_.ecanceled};
    double below = 0;
    for (int k = 0; k < kNumFaultKinds; ++k) {
      below += bounds[k];
      if (u < below) {
        out = Inject(static_cast<FaultKind>(k), op, cursor, res);
        break;
      }
    }
  }
  // The bytes taken away are garbage now, as after a real failed read: the
  // backend must read them again before it reports the op done.
  if (out < res) {
    const auto kept = static_cast<std::size_t>(std::max<std::int64_t>(out, 0));
    std::memset(buf + kept, 0xEE, static_cast<std::size_t>(res) - kept);
  }
  Account(op, cursor, out);
  return out;
}

// Returns the rewritten result, or `res` when this fault cannot apply here.
std::int64_t FaultInjector::Inject(FaultKind kind, const ReadOp& op, const OpCursor& cursor,
                                   std::int64_t res) {
  std::int64_t out = res;
  switch (kind) {
    case FaultKind::kShortRead: {
      // A genuine short read: short of `required` (else the op would be
      // done) and beyond any earlier end (else it would mean EOF).
      // (cursor.done <= cursor.reached < op.required while the op runs.)
      const auto got = static_cast<std::uint64_t>(res);
      const std::uint64_t lo = cursor.reached + 1 - cursor.done;
      const std::uint64_t hi = std::min(got, op.required - cursor.done) - 1;
      if (lo > hi) return res;
      out = static_cast<std::int64_t>(lo + rng_() % (hi - lo + 1));
      break;
    }
    case FaultKind::kZeroRead:
      out = 0;
      break;
    case FaultKind::kEagain:
    case FaultKind::kEintr:
      if (rates_.bounded_retries && cursor.retries + 1 >= kMaxRetries) return res;
      out = kind == FaultKind::kEagain ? -EAGAIN : -EINTR;
      break;
    case FaultKind::kEio:
      out = -EIO;
      break;
    case FaultKind::kEcanceled:
      out = -ECANCELED;
      break;
  }
  log_.Add(InjectedFault{kind, worker_, op.file, op.offset, op.length, cursor.offset(op), res,
                         out});
  return out;
}

// Mirrors what the policy will count for `res`, for the stats check.
void FaultInjector::Account(const ReadOp& op, const OpCursor& cursor, std::int64_t res) {
  if (cursor.done == 0 && cursor.reached == 0 && cursor.retries == 0) ++inputs_.first_reads;
  if (res == -EAGAIN || res == -EINTR) ++inputs_.retries;
  if (res <= 0) return;
  inputs_.bytes += static_cast<std::uint64_t>(res);
  const std::uint64_t end = cursor.done + static_cast<std::uint64_t>(res);
  if (end < op.required && end > cursor.reached) ++inputs_.short_reads;
}

void FaultInjector::Arrive(std::uint64_t user_data, std::int32_t res) {
  arrived_.emplace_back(user_data, res);
}

bool FaultInjector::Next(unsigned in_kernel, std::uint64_t* user_data, std::int32_t* res) {
  if (!arrived_.empty()) Deal(in_kernel);
  if (ready_.empty() && in_kernel == 0 && !held_.empty()) {
    // Nothing else will arrive: everything held goes now, shuffled.
    ready_.swap(held_);
    std::shuffle(ready_.begin(), ready_.end(), rng_);
  }
  if (ready_.empty()) return false;
  *user_data = ready_.back().first;
  *res = ready_.back().second;
  ready_.pop_back();
  return true;
}

// This reap's completions and those held before, shuffled; each is held
// back again with probability rates_.hold while other reads are in the
// kernel (a later completion will bring the scheduler back).
void FaultInjector::Deal(unsigned in_kernel) {
  ++inputs_.reaps;
  arrived_.insert(arrived_.end(), held_.begin(), held_.end());
  held_.clear();
  std::shuffle(arrived_.begin(), arrived_.end(), rng_);
  for (const Completion& c : arrived_) {
    if (in_kernel > 0 && Uniform() < rates_.hold) {
      held_.push_back(c);
      ++inputs_.held;
    } else {
      ready_.push_back(c);
    }
  }
  arrived_.clear();
}

// --- FaultyBackend -----------------------------------------------------------

FaultyBackend::FaultyBackend(const IoBackend& inner, std::uint64_t seed,
                             const FaultRates& rates)
    : inner_(inner), seed_(seed), rates_(rates) {}

Status FaultyBackend::Execute(WorkerOps& ops, const ExecContext& ctx,
                              WorkerStats& stats) const {
  const std::uint64_t seed = MixSeed(MixSeed(seed_, ops.plan_size()), ops.worker());
  FaultInjector injector(seed, rates_, log_.StartWorker(), log_);
  ExecContext filtered = ctx;
  filtered.filter = &injector;
  Status status = inner_.Execute(ops, filtered, stats);
  log_.Count(injector.inputs());
  return status;
}

}  // namespace shardload::test
