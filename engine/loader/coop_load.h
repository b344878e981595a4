// The cooperation room of the loader (LoadRequest::cooperate,
// docs/cooperate.md): the session around one call (Cooperating), what this
// member says about its job for the others to compare (JobIdentity), and the
// cooperative read itself: this member's slots of the node's staging read by
// the read runtime, its own bytes copied out to host memory (coop::HostSink),
// a CUDA device (CoopDeviceSink) or converted (convert_load.h), or read
// alone when the leader finds them in the page cache.
// Thread-safe: pure functions (JobIdentity reads the plan file and stats
// the shards); a session, a read and a CoopDeviceSink are driven by the
// calling thread (the reads use the runtime's workers).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "coop/protocol.h"
#include "coop/session.h"
#include "device/staged_copy.h"
#include "device/waves.h"
#include "loader/cancel_watch.h"
#include "loader/device_load.h"
#include "loader/guard.h"
#include "loader/read_runtime.h"
#include "shardload/checkpoint.h"
#include "shardload/options.h"

namespace shardload {

// The fields every member of a cooperative load must agree on: checkpoint
// (each shard's device, inode, size and modification time as recorded when
// its header was read, and a hash of the tensor table: the files, not the
// path strings naming them), plan (its name and a hash of its text), world,
// OPERATION ("load", "reload", "load_into") and SELECTION (in words), read
// mode and staging.
coop::Identity JobIdentity(const Checkpoint& checkpoint, const LoadRequest& request,
                           unsigned rank, unsigned world, const PlanSource* plan,
                           const std::string& operation, const std::string& selection);

// "names hash <hex>": a digest of NAMES (a long list of tensor names).
std::string SelectionDigest(std::string_view names);

// Selection in words: "all", or its names and globs.
std::string SelectionText(const Selection& selection);

// Each shard's size as its header was read (the schedule never reads past it).
std::vector<std::uint64_t> ShardSizes(const Checkpoint& checkpoint);
std::vector<std::string> ShardPaths(const Checkpoint& checkpoint);

// A cooperative load's copies to a CUDA device: the node's staging pinned
// once in this process (cudaHostRegister of its whole mapping), each batch
// of runs one cudaMemcpy2DAsync to LOCAL's device memory on a few streams,
// every copy of a wave finished before the wave's staging is reused. The
// padding of zero_fill tensors is zeroed on the device first.
class CoopDeviceSink final : public coop::CopySink {
 public:
  static Result<std::unique_ptr<CoopDeviceSink>> Start(std::shared_ptr<const CudaRuntime> cuda,
                                                       unsigned streams,
                                                       std::span<const DeviceTensor> local);
  Status Attach(std::byte* staging, std::size_t size) override;
  Status Copy(const coop::CopyRuns& runs) override;
  Status Flush() override;
  void Detach() override;
  bool drops_pages() const override { return false; }

  bool attached() const { return attached_; }
  // LoadStats::transfer: what went to the device and how.
  std::string Describe() const;

 private:
  CoopDeviceSink(std::unique_ptr<StagedCopier> copier, std::span<const DeviceTensor> local)
      : copier_(std::move(copier)), local_(local) {}

  std::unique_ptr<StagedCopier> copier_;
  std::span<const DeviceTensor> local_;
  bool attached_ = false;
  std::uint64_t waves_ = 0;
};

// What a cooperative read needs besides its segments: the node's session,
// the runtime that reads this member's slots, the checkpoint (a member reads
// its slots from any shard the node needs) and the call's read settings and
// progress (counted as bytes are copied out).
struct CoopContext {
  coop::Session* session = nullptr;
  ReadRuntime* runtime = nullptr;
  const Checkpoint* checkpoint = nullptr;
  ReadSettings settings;
  ProgressFn progress;
};

// Reads some of a member's own segments alone (no staging).
using OwnReader = std::function<Result<LoadStats>(std::span<const Segment>)>;

// The cooperative read of SEGMENTS (coop/session.h): copies out of staging
// go through SINK; READ_OWN reads some of SEGMENTS alone when the leader
// finds them in the page cache; SHARE: coop::ReadRequest::share.
Result<LoadStats> RunCooperative(const CoopContext& coop, std::span<const Segment> segments,
                                 coop::CopySink& sink, const OwnReader& read_own, bool share);

// The cooperative read of a plain load's SEGMENTS (JOB: as for
// ReadSegments, its observer unused): this member's share of the node's
// bytes into shared staging, its own bytes copied out to host memory or, with
// DEVICE.cuda, to LOCAL on the device (or read as by ReadSegments when the
// leader finds them in the page cache).
Result<LoadStats> ReadCooperative(const CoopContext& coop, const ReadJob& job,
                                  const DeviceLoad& device, std::span<const DeviceTensor> local,
                                  std::span<const Segment> segments);

// Runs BODY(session) as one cooperative load with REQUEST.cooperate's group,
// else BODY(nullptr): meets the others first (they must agree on
// IDENTITY()), and tells them if BODY fails (or never reached its reads).
// BODY returns a Result or a Status; running out of memory inside it is
// kResourceExhausted, told to the others too.
template <typename Body>
auto Cooperating(const LoadRequest& request, const Checkpoint& checkpoint,
                 const std::function<coop::Identity()>& identity, Body&& body)
    -> decltype(body(nullptr)) {
  using R = decltype(body(nullptr));
  if (!request.cooperate.group) return body(nullptr);
  std::atomic<bool> stop{false};
  CancelWatch watch(request.cancel.get(), &stop);
  auto session = coop::Session::Start(*request.cooperate.group, request.cooperate, identity(),
                                      ShardPaths(checkpoint), &stop);
  if (!session) {
    if (Status s = CheckCancel(request.cancel.get()); !s) return R(std::move(s).error());
    return R(std::move(session).error());
  }
  R result = GuardMemory([&] { return body(session->get()); });
  if (!result) {
    (*session)->Fail(result.error());
  } else if (!(*session)->done()) {  // it never read with the others
    Error e = MakeError(ErrorCode::kInternal, "", "", "the load did not reach its reads");
    (*session)->Fail(e);
    result = R(std::move(e));
  }
  (*session)->Finish();
  return result;
}

}  // namespace shardload
