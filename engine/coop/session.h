// One member's side of a cooperative load (docs/cooperate.md). Start meets
// the other members through the Communicator (the leader, local member 0,
// starts the hub and broadcasts its name) and joins the hub, which checks
// that everyone loads the same job. Run then reads this member's share of
// the node's bytes into the shared staging in waves and copies its own
// segments out of it (or, when the leader finds the bytes in the page cache,
// reads its own segments directly). Any error of this member is sent to the
// hub (Fail), which fails everyone else with kPeerFailed naming this member.
// Thread-compatible: one thread drives a Session.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "coop/hub.h"
#include "coop/protocol.h"
#include "plan/read_op.h"
#include "shardload/cooperate.h"
#include "shardload/error.h"
#include "shardload/stats.h"
#include "util/fd.h"

namespace shardload::coop {

// ROWS runs of LENGTH bytes to copy out of staging: from SRC (runs
// SRC_STRIDE apart) to DST (DST_STRIDE apart), for the segment tagged TAG.
struct CopyRuns {
  std::byte* dst = nullptr;
  std::uint64_t dst_stride = 0;
  const std::byte* src = nullptr;
  std::uint64_t src_stride = 0;
  std::uint64_t length = 0;
  std::uint64_t rows = 0;
  std::uint32_t tag = 0;
};

// Where a member's copies out of staging go: host memory (HostSink) or the
// loader's device. Driven by the session's thread.
class CopySink {
 public:
  virtual ~CopySink() = default;
  // The staging, mapped for the whole load, before the first Copy.
  virtual Status Attach(std::byte* staging, std::size_t size) = 0;
  virtual Status Copy(const CopyRuns& runs) = 0;
  // Every Copy so far is complete: the staging they read may be reused.
  virtual Status Flush() = 0;
  // Before the staging is unmapped (after a failure too).
  virtual void Detach() = 0;
  // Whether staging pages may be dropped from this process's page tables
  // once used (not while they are pinned for a device).
  virtual bool drops_pages() const = 0;
};

// Copies into host memory with memcpy, calling BEFORE_WRITE (may be empty)
// with each batch's destination range first.
std::unique_ptr<CopySink> HostSink(std::function<void(std::byte*, std::size_t)> before_write);

// What a member's loader does for the session.
struct Executor {
  // Reads SEGMENTS (file = shard index) into memory with the load's read
  // mode; WINDOWS: memory the reads may overwrite (O_DIRECT slack).
  std::function<Result<LoadStats>(std::span<const Segment>, std::span<const Window>)> read;
  // Reads SEGMENTS (some of this member's own) the ordinary way, into its
  // memory (no staging).
  std::function<Result<LoadStats>(std::span<const Segment>)> read_own;
  // Where this member's bytes are copied out of staging (required for a
  // staged load).
  CopySink* sink = nullptr;
  // Told the bytes copied out of each wave once they are in place (may be
  // empty).
  std::function<void(std::uint64_t)> copied;
};

struct ReadRequest {
  std::span<const Segment> segments;  // this member's, into its destinations
  std::uint64_t alignment = 1;        // O_DIRECT alignment of the shards
  IoMode mode = IoMode::kAuto;
  std::vector<std::uint64_t> file_sizes;
  // The destinations are this member's own pages (library-owned host
  // memory): a contiguous segment every member needs may be mapped there,
  // copy-on-write, from one copy in the node's memfd.
  bool share = false;
};

class Session {
 public:
  // SHARD_PATHS: the checkpoint's shards (the leader probes residency).
  // STOP: the caller's cancellation flag (may be null).
  static Result<std::unique_ptr<Session>> Start(Communicator& group, const Cooperation& options,
                                                const Identity& identity,
                                                std::vector<std::string> shard_paths,
                                                const std::atomic<bool>* stop);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Reads REQUEST's segments cooperatively; fills stats().
  Result<LoadStats> Run(const ReadRequest& request, const Executor& exec);
  // Tells the others this member failed with ERROR (not when ERROR came
  // from the others). Idempotent.
  void Fail(const Error& error);
  // The leader waits for its hub to finish (everyone done or an abort).
  void Finish();
  // Whether Run finished (a load that never reached Run must Fail).
  bool done() const { return done_; }

  const CooperationStats& stats() const { return stats_; }

 private:
  Session(const Cooperation& options, unsigned local_rank, unsigned local_size);
  // The next hub message of TYPE for wave WAVE, keeping count of the others.
  Status WaitFor(std::uint32_t type, std::uint32_t wave);
  Status SendToHub(std::uint32_t type, const std::string& body);
  Error FromHub(const Error& e) const;
  Error Aborted(std::string_view body) const;  // the hub's kAbort, as this member's error
  // Tells the hub what REQUEST needs; returns the leader's plan (and the
  // node's memfd in MEMFD).
  Result<PlanMessage> ExchangeNeeds(const ReadRequest& request, FileDescriptor& memfd);
  // Each member reads its own (OWN), plus the replicas it fills (FILLS in
  // FILL_WINDOWS of the memfd).
  Result<LoadStats> ReadOwn(std::span<const Segment> own, std::span<const Segment> fills,
                            std::span<const Window> fill_windows, const Executor& exec);
  // Puts the replicas MAPPED at their destinations from the node's MEMFD
  // (mapped at SHARED); returns the bytes they hold.
  Result<std::uint64_t> MapReplicas(const PlanMessage& plan,
                                    std::span<const std::pair<Segment, Replica>> mapped,
                                    int memfd, const std::byte* shared);
  // SEGMENTS: this member's, from FIRST_FILL on the replicas it fills for
  // the node (dropped from its page tables once copied); SHARED: the node's
  // memfd, mapped.
  Result<LoadStats> RunStaged(const ReadRequest& request, std::span<const Segment> segments,
                              std::size_t first_fill, const Executor& exec,
                              const PlanMessage& plan, std::byte* shared);
  struct Staged;  // one staged run (session.cpp)
  // Iteration K of a staged run: reads wave K (on a thread of its own)
  // while wave K - 1 is copied out.
  Status StepWave(Staged& run, std::uint32_t k);
  Status ReadWave(Staged& run, std::uint32_t k);
  Status CopyWave(Staged& run, std::uint32_t k);
  // Copies wave K's copy tasks [FIRST, END) (all of one piece) out.
  Status CopyPiece(Staged& run, std::uint32_t k, std::size_t first, std::size_t end);
  // Waits until every member has filled its replicas (see protocol.h).
  Status WaitForReplicas(const PlanMessage& plan);
  void PauseForTest(std::uint32_t wave) const;

  Cooperation options_;
  unsigned local_rank_;
  unsigned local_size_;
  unsigned rank_ = 0;
  std::string leader_ = "the leader (local rank 0)";  // named from kAgreed
  const std::atomic<bool>* stop_ = nullptr;
  std::unique_ptr<Hub> hub_;  // the leader's
  FileDescriptor link_;       // to the hub
  bool failed_ = false;       // Fail was called or the hub aborted
  bool done_ = false;         // Run finished and told the hub
  std::uint32_t all_read_ = 0;    // waves every member has read
  std::uint32_t all_copied_ = 0;  // waves every member has copied out
  CooperationStats stats_;
};

}  // namespace shardload::coop
