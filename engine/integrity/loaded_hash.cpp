// LoadVerifier: per shard read by the load, a job; `threads` threads claim
// jobs (a whole shard whose first bytes are in place, furthest along first;
// else a shard to read again; else they wait) and hash a whole shard in file
// order: the header and any uncovered bytes with pread, the tensors from
// memory as Delivered reports them in place.
// Thread-safe: the jobs' progress is under mu_; each claimed job's hash and
// error belong to the thread that claimed it until Finish joins it.
#include "integrity/loaded_hash.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <system_error>

#include "index/checkpoint_access.h"
#include "integrity/file_hasher.h"
#include "io/file_table.h"
#include "integrity/manifest.h"
#include "integrity/paths.h"
#include "integrity/sha256.h"
#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload {
namespace {

constexpr std::uint64_t kGapBuffer = 1ULL << 20;
// Hash at most this much of loaded memory per WaitFor (a tensor may be
// delivered in pieces; big spans are fine, this only bounds latency).
constexpr std::uint64_t kSpan = 64ULL << 20;

// Hashes bytes [from, to) of the open file.
Status HashRange(int fd, const std::string& path, std::uint64_t from, std::uint64_t to,
                 Sha256& sha, std::vector<std::byte>& buffer) {
  while (from < to) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(to - from, kGapBuffer));
    buffer.resize(std::max(buffer.size(), want));
    ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(from));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError(path, "pread at offset " + std::to_string(from), errno);
    if (n == 0) {
      return MakeError(ErrorCode::kTruncated, path, "",
                       "the file ended at byte " + std::to_string(from));
    }
    sha.Update({buffer.data(), static_cast<std::size_t>(n)});
    from += static_cast<std::uint64_t>(n);
  }
  return {};
}

std::uint64_t End(const LoadedBytes& b) { return b.tensor->offset + b.tensor->size; }

}  // namespace

std::string LoadCheck::Describe() const {
  return std::to_string(from_memory) + " files verified from the loaded bytes, " +
         std::to_string(from_storage) + " by reading them again";
}

// --- Intervals -----------------------------------------------------------------

void LoadVerifier::Intervals::Add(std::uint64_t lo, std::uint64_t hi) {
  if (lo >= hi) return;
  auto it = ranges_.upper_bound(lo);
  if (it != ranges_.begin() && std::prev(it)->second >= lo) {
    --it;
    lo = it->first;
    hi = std::max(hi, it->second);
  }
  while (it != ranges_.end() && it->first <= hi) {
    hi = std::max(hi, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(lo, hi);
}

std::uint64_t LoadVerifier::Intervals::EndFrom(std::uint64_t x) const {
  auto it = ranges_.upper_bound(x);
  if (it == ranges_.begin()) return x;
  --it;
  return it->second > x ? it->second : x;
}

// --- LoadVerifier ----------------------------------------------------------------

LoadVerifier::LoadVerifier(const Checkpoint& checkpoint, std::string manifest_path)
    : checkpoint_(checkpoint),
      manifest_path_(std::move(manifest_path)),
      job_of_shard_(checkpoint.shards().size(), -1) {}

Result<std::unique_ptr<LoadVerifier>> LoadVerifier::Start(const Checkpoint& checkpoint,
                                                          const std::string& manifest_path,
                                                          std::span<const LoadedBytes> loaded,
                                                          unsigned threads) {
  auto manifest = ReadManifest(manifest_path);
  if (!manifest) return std::move(manifest).error();
  std::unique_ptr<LoadVerifier> v(new LoadVerifier(checkpoint, manifest_path));
  // Group by shard; a shard is whole when the load holds all its tensors unchanged.
  std::vector<std::optional<Job>> by_shard(checkpoint.shards().size());
  for (const LoadedBytes& b : loaded) {
    auto& job = by_shard[b.tensor->shard];
    if (!job) job.emplace().shard = b.tensor->shard;
    if (b.data == nullptr) job->whole = false;
    job->tensors.push_back(b);
  }
  for (auto& job : by_shard) {
    if (!job) continue;
    const ShardInfo& shard = checkpoint.shards()[job->shard];
    const std::string* expected = manifest->Find(ShardKey(shard));
    if (expected == nullptr) {
      return MakeError(ErrorCode::kBadManifest, manifest_path, "",
                       "no digest for shard `" + ShardKey(shard) + "` (" + shard.path + ")");
    }
    job->expected = *expected;
    if (job->tensors.size() != shard.num_tensors) job->whole = false;
    if (!job->whole) job->tensors.clear();
    std::erase_if(job->tensors, [](const LoadedBytes& b) { return b.tensor->size == 0; });
    std::sort(job->tensors.begin(), job->tensors.end(),
              [](const LoadedBytes& a, const LoadedBytes& b) {
                return a.tensor->offset < b.tensor->offset;
              });
    job->first = job->tensors.empty() ? 0 : job->tensors.front().tensor->offset;
    v->jobs_.push_back(std::move(*job));
  }
  std::sort(v->jobs_.begin(), v->jobs_.end(), [&](const Job& a, const Job& b) {
    return checkpoint.shards()[a.shard].file_size > checkpoint.shards()[b.shard].file_size;
  });
  for (std::size_t i = 0; i < v->jobs_.size(); ++i) {
    v->job_of_shard_[v->jobs_[i].shard] = static_cast<int>(i);
  }
  const std::size_t n = std::min<std::size_t>(std::max(1u, threads), v->jobs_.size());
  try {
    for (std::size_t t = 0; t < n; ++t) v->threads_.emplace_back([p = v.get()] { p->Run(); });
  } catch (const std::system_error& e) {
    if (v->threads_.empty()) {
      return MakeError(ErrorCode::kResourceExhausted, manifest_path, "",
                       std::string("cannot start a hashing thread: ") + e.what());
    }
  }
  return v;
}

LoadVerifier::~LoadVerifier() {
  Stop();
  for (std::thread& t : threads_) t.join();
}

void LoadVerifier::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void LoadVerifier::Delivered(std::uint32_t file, std::uint64_t lo, std::uint64_t hi,
                             const std::byte* at) noexcept {
  if (file >= job_of_shard_.size() || job_of_shard_[file] < 0) return;
  Job& job = jobs_[static_cast<std::size_t>(job_of_shard_[file])];
  if (!job.whole || lo >= hi) return;
  // The tensors [begin, ...) overlapping [lo, hi), fixed since Start.
  auto it = std::upper_bound(job.tensors.begin(), job.tensors.end(), lo,
                             [](std::uint64_t x, const LoadedBytes& b) { return x < End(b); });
  bool added = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (; it != job.tensors.end() && it->tensor->offset < hi; ++it) {
      const std::uint64_t a = std::max(lo, it->tensor->offset);
      const std::uint64_t b = std::min(hi, End(*it));
      // Only bytes that landed where the tensor holds them (not slack in a window).
      if (a >= b || at + (a - lo) != it->data + (a - it->tensor->offset)) continue;
      try {
        job.covered.Add(a, b);
      } catch (const std::bad_alloc&) {
        lost_ = true;  // Finish reports it; the bytes' hasher gives up then
      }
      added = true;
    }
  }
  if (added) cv_.notify_all();
}

Result<LoadCheck> LoadVerifier::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  if (lost_) {
    return MakeError(ErrorCode::kResourceExhausted, manifest_path_, "",
                     "load --verify: out of memory recording the bytes read");
  }
  LoadCheck check;
  for (Job& job : jobs_) {
    if (job.error) return std::move(*job.error);
    if (!job.claimed) {
      return MakeError(ErrorCode::kInternal, checkpoint_.shards()[job.shard].path, "",
                       "load --verify: the shard was never hashed");
    }
    ++(job.whole ? check.from_memory : check.from_storage);
  }
  return check;
}

void LoadVerifier::Run() {
  while (Job* job = Claim()) Check(*job);
}

// Whole shards whose first bytes are in place, furthest along first; else a
// shard to read again; else wait. Null when stopped or no job is left.
LoadVerifier::Job* LoadVerifier::Claim() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stop_) return nullptr;
    Job* best = nullptr;
    std::uint64_t best_ready = 0;
    Job* stored = nullptr;
    bool left = false;
    for (Job& job : jobs_) {
      if (job.claimed) continue;
      left = true;
      if (!job.whole) {
        if (stored == nullptr) stored = &job;
        continue;
      }
      const std::uint64_t ready = job.tensors.empty() ? 1 : job.covered.EndFrom(job.first) - job.first;
      if ((ready > 0 || finished_) && (best == nullptr || ready > best_ready)) {
        best = &job;
        best_ready = ready;
      }
    }
    if (best == nullptr) best = stored;
    if (best != nullptr) {
      best->claimed = true;
      return best;
    }
    if (!left) return nullptr;
    cv_.wait(lock);
  }
}

std::optional<std::uint64_t> LoadVerifier::WaitFor(const Job& job, std::uint64_t x) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stop_) return std::nullopt;
    const std::uint64_t end = job.covered.EndFrom(x);
    if (end > x) return end;
    if (finished_) return std::nullopt;
    cv_.wait(lock);
  }
}

Result<std::string> LoadVerifier::HashWhole(Job& job) {
  const ShardInfo& shard = checkpoint_.shards()[job.shard];
  auto files = FileTable::OpenOne(
      shard.path, internal::CheckpointAccess::SharedFile(checkpoint_, job.shard), IoMode::kBuffered);
  if (!files) return std::move(files).error();
  const int fd = files->fd(0, false);
  Sha256 sha;
  std::vector<std::byte> buffer;
  std::uint64_t pos = 0;
  for (const LoadedBytes& t : job.tensors) {
    if (Status s = HashRange(fd, shard.path, pos, t.tensor->offset, sha, buffer); !s) {
      return std::move(s).error();
    }
    for (std::uint64_t x = t.tensor->offset; x < End(t);) {
      auto end = WaitFor(job, x);
      if (!end) {  // (when stopped, the load failed and drops this error)
        return MakeError(ErrorCode::kInternal, shard.path, t.tensor->name,
                         "load --verify: byte " + std::to_string(x) +
                             " of the shard was never reported in place");
      }
      const std::uint64_t to = std::min({*end, End(t), x + kSpan});
      sha.UpdateFromMemory({t.data + (x - t.tensor->offset), to - x});
      x = to;
    }
    pos = End(t);
  }
  if (Status s = HashRange(fd, shard.path, pos, shard.file_size, sha, buffer); !s) {
    return std::move(s).error();
  }
  return sha.FinalHex();
}

Result<std::string> LoadVerifier::HashStored(const Job& job) const {
  const ShardInfo& shard = checkpoint_.shards()[job.shard];
  HashOptions options;
  options.expected_size = shard.file_size;
  options.mode = IoMode::kAuto;
  options.shard = internal::CheckpointAccess::SharedFile(checkpoint_, job.shard);
  auto hash = HashFile(shard.path, options);
  if (!hash) return std::move(hash).error();
  return std::move(hash->sha256);
}

void LoadVerifier::Check(Job& job) {
  const ShardInfo& shard = checkpoint_.shards()[job.shard];
  try {
    auto digest = job.whole ? HashWhole(job) : HashStored(job);
    if (!digest) {
      job.error = std::move(digest).error();
    } else if (*digest != job.expected) {
      job.error = MakeError(ErrorCode::kChecksumMismatch, shard.path, "",
                            "SHA-256 is " + *digest + "; the manifest " + manifest_path_ +
                                " says " + job.expected);
    }
  } catch (const std::bad_alloc&) {
    job.error = MakeError(ErrorCode::kResourceExhausted, shard.path, "", "out of memory");
  }
}

}  // namespace shardload
