// The loader's side of a cooperative load (LoadOptions::cooperate,
// docs/cooperate.md): what this member says about its job for the others to
// compare (JobIdentity), the shard facts the schedule needs, and the copy
// out of the node's staging to a CUDA device (CoopDeviceSink).
// Thread-safe: pure functions (JobIdentity reads the plan file and stats
// the shards); a CoopDeviceSink is driven by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coop/protocol.h"
#include "coop/session.h"
#include "device/staged_copy.h"
#include "device/waves.h"
#include "shardload/checkpoint.h"
#include "shardload/loader.h"

namespace shardload {

// The fields every member of a cooperative load must agree on: checkpoint
// (each shard's device, inode, size and modification time as recorded when
// its header was read, and a hash of the tensor table: the files, not the
// path strings naming them), plan (its name and a hash of its text), world,
// OPERATION ("load", "reload", "load_into") and SELECTION (in words), read
// mode and staging.
coop::Identity JobIdentity(const Checkpoint& checkpoint, const LoadOptions& options,
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

}  // namespace shardload
