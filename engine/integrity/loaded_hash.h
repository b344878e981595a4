// LoadVerifier: checks the files a load reads against a manifest, hashing
// while the load runs. A shard whose every tensor the load holds whole, byte
// for byte as in the file, is hashed from that memory, in file order, as the
// load's reads put its bytes in place (DeliveryObserver; only its header,
// and any bytes no listed tensor covers, are read again: a few KiB); any
// other shard the load reads from (a selection, rank slices, converted
// dtypes, a device load) is hashed from storage, a second read of the whole
// file, on the same threads, also while the load runs. Shards the load does
// not read from are not checked.
// Thread-safe: Delivered may be called from any number of threads at once;
// Start, Finish and the destructor belong to the thread running the load.
// The hashing threads share the per-shard progress under one mutex.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "io/io_backend.h"
#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload {

// One tensor a load reads: `data` will hold its file bytes unchanged, or is
// null when the load keeps only a slice or a converted copy.
struct LoadedBytes {
  const TensorInfo* tensor = nullptr;
  const std::byte* data = nullptr;
};

struct LoadCheck {
  unsigned from_memory = 0;   // shards hashed from the loaded bytes
  unsigned from_storage = 0;  // shards hashed by reading them again
  std::string Describe() const;
};

class LoadVerifier final : public DeliveryObserver {
 public:
  // Reads the manifest and starts up to `threads` hashing threads, which
  // wait for the bytes of the in-memory shards (Delivered) and read the
  // others. Errors: kBadManifest (unreadable, or no entry for a shard
  // read), kResourceExhausted (no thread could start).
  static Result<std::unique_ptr<LoadVerifier>> Start(const Checkpoint& checkpoint,
                                                     const std::string& manifest_path,
                                                     std::span<const LoadedBytes> loaded,
                                                     unsigned threads);
  // Stops the hashing threads (those waiting for bytes give up) and joins
  // them: a failed load simply drops its verifier, before its memory.
  ~LoadVerifier() override;
  LoadVerifier(const LoadVerifier&) = delete;
  LoadVerifier& operator=(const LoadVerifier&) = delete;

  void Delivered(std::uint32_t file, std::uint64_t lo, std::uint64_t hi,
                 const std::byte* at) noexcept override;
  // After every read of the load succeeded: waits for the hashes and
  // compares. Errors: kChecksumMismatch naming the shard (expected and
  // computed digests in the detail), kIoError / kTruncated from reading a
  // shard, kInternal if a held tensor's bytes were never delivered,
  // kResourceExhausted if a delivery could not be recorded (out of memory).
  Result<LoadCheck> Finish();

 private:
  // File ranges [lo, hi) known to be in place, merged.
  class Intervals {
   public:
    void Add(std::uint64_t lo, std::uint64_t hi);
    // The end of the range holding byte x, or x when none does.
    std::uint64_t EndFrom(std::uint64_t x) const;

   private:
    std::map<std::uint64_t, std::uint64_t> ranges_;  // lo -> hi
  };

  // One shard to check. Guarded by mu_ once the threads run: covered,
  // claimed, waiting; the rest is fixed at Start or owned by the thread
  // that claimed the job.
  struct Job {
    std::uint32_t shard = 0;
    std::string expected;              // the manifest's digest
    bool whole = true;                 // hashed from memory
    std::vector<LoadedBytes> tensors;  // whole: every tensor, sorted by offset
    std::uint64_t first = 0;           // whole: offset of its first tensor byte
    Intervals covered;
    bool claimed = false;
    std::optional<Error> error;
  };

  LoadVerifier(const Checkpoint& checkpoint, std::string manifest_path);
  void Run();                     // one hashing thread
  Job* Claim();                   // the next job to hash, or null when done
  Result<std::string> HashWhole(Job& job);
  Result<std::string> HashStored(const Job& job) const;
  // Blocks until byte x of the job's shard is in place; returns the end of
  // the range in place from x, or nullopt once stopped or finished without it.
  std::optional<std::uint64_t> WaitFor(const Job& job, std::uint64_t x);
  void Check(Job& job);           // hashes and compares, sets job.error
  void Stop();

  const Checkpoint& checkpoint_;
  const std::string manifest_path_;
  std::vector<Job> jobs_;                        // largest first
  std::vector<int> job_of_shard_;                // -1: not read by the load
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;       // give up (a failed load)
  bool finished_ = false;   // every read done: a gap now is an error
  bool lost_ = false;       // a delivery could not be recorded (bad_alloc)
  std::vector<std::thread> threads_;
};

}  // namespace shardload
