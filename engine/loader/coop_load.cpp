// The cooperation room (coop_load.h): a member's job identity and its
// cooperative reads.
// Thread-safe: as coop_load.h says.
#include "loader/coop_load.h"

#include <sys/stat.h>

#include <cstdio>

#include "index/checkpoint_access.h"
#include "index/shard_file.h"
#include "loader/load_items.h"
#include "util/small_file.h"

namespace shardload {

namespace {

std::string Fnv(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Shard SHARD's identity (device, inode, size, modification time) as the
// checkpoint recorded it from the descriptor its header was read through
// (index/shard_file.h), so that members compare files, not path strings;
// for a checkpoint assembled without files (tests), the file at its path.
std::string ShardFacts(const Checkpoint& checkpoint, std::uint32_t shard) {
  if (const internal::ShardFile* file = internal::CheckpointAccess::File(checkpoint, shard)) {
    return file->identity().ToString();
  }
  struct stat st {};
  if (::stat(checkpoint.shards()[shard].path.c_str(), &st) != 0) return "unreadable";
  return internal::IdentityOf(st).ToString();
}

// A hash of the tensor table (name, dtype, shape, shard, offset, size):
// members whose indexes map the same files differently disagree here.
std::string TensorsDigest(const Checkpoint& checkpoint) {
  std::string text;
  for (const TensorInfo& t : checkpoint.tensors()) {
    text += t.name;
    text += '\0';
    text += std::to_string(static_cast<int>(t.dtype)) + ' ' + std::to_string(t.shard) + ' ' +
            std::to_string(t.offset) + ' ' + std::to_string(t.size);
    for (std::uint64_t d : t.shape) text += ' ' + std::to_string(d);
    text += '\n';
  }
  return Fnv(text);
}

// A hash of the plan's text: members naming the same plan file must read
// the same plan.
std::string PlanDigest(const Checkpoint& checkpoint, const PlanSource& plan) {
  using Kind = PlanSource::Kind;
  if (plan.kind == Kind::kNone) return "none";
  if (plan.kind == Kind::kJson || plan.kind == Kind::kHfConfigJson) return Fnv(plan.text);
  const std::string path = plan.kind == Kind::kHf ? HfConfigPath(checkpoint) : plan.path;
  auto text = ReadSmallFile(path, "plan", kMaxPlanFileSize, ErrorCode::kTpPlanJson);
  return text ? Fnv(*text) : "unreadable";
}

}  // namespace

std::string SelectionDigest(std::string_view names) { return "names hash " + Fnv(names); }

std::string SelectionText(const Selection& selection) {
  if (selection.names.empty() && selection.globs.empty()) return "all";
  std::string out;
  for (const std::string& n : selection.names) out += (out.empty() ? "" : ", ") + n;
  for (const std::string& g : selection.globs) out += (out.empty() ? "glob " : ", glob ") + g;
  return out;
}

coop::Identity JobIdentity(const Checkpoint& checkpoint, const LoadRequest& request,
                           unsigned rank, unsigned world, const PlanSource* plan,
                           const std::string& operation, const std::string& selection) {
  coop::Identity id;
  id.rank = rank;
  id.world = world;
  auto add = [&](std::string what, std::string value) {
    id.fields.emplace_back(std::move(what), std::move(value));
  };
  add("shards", std::to_string(checkpoint.shards().size()));
  for (std::uint32_t i = 0; i < checkpoint.shards().size(); ++i) {
    add("shard " + checkpoint.shards()[i].name, ShardFacts(checkpoint, i));
  }
  add("tensors (hash)", TensorsDigest(checkpoint));
  add("plan", plan != nullptr ? (plan->kind == PlanSource::Kind::kNone ? "none" : plan->Describe())
                              : "the loaded checkpoint's");
  if (plan != nullptr) add("plan text (hash)", PlanDigest(checkpoint, *plan));
  add("world", std::to_string(world));
  add("operation", operation);
  add("selection", selection);
  add("read mode", IoModeName(request.mode));
  add("staging bytes", std::to_string(request.cooperate.staging_bytes));
  add("local size", std::to_string(request.cooperate.group->size()));
  return id;
}

std::vector<std::uint64_t> ShardSizes(const Checkpoint& checkpoint) {
  std::vector<std::uint64_t> sizes;
  for (const ShardInfo& s : checkpoint.shards()) sizes.push_back(s.file_size);
  return sizes;
}

std::vector<std::string> ShardPaths(const Checkpoint& checkpoint) {
  std::vector<std::string> paths;
  for (const ShardInfo& s : checkpoint.shards()) paths.push_back(s.path);
  return paths;
}

Result<LoadStats> RunCooperative(const CoopContext& coop, std::span<const Segment> segments,
                                 coop::CopySink& sink, const OwnReader& read_own, bool share) {
  const Checkpoint& checkpoint = *coop.checkpoint;
  std::vector<const TensorInfo*> all;
  all.reserve(checkpoint.tensors().size());
  for (const TensorInfo& t : checkpoint.tensors()) all.push_back(&t);
  auto every = OpenShards(checkpoint, all, coop.settings.mode);
  if (!every) return std::move(every).error();
  coop::ReadRequest request{segments, every->alignment(), coop.settings.mode,
                            ShardSizes(checkpoint)};
  request.share = share;
  std::uint64_t total = 0;
  for (const Segment& s : segments) total += s.length * s.count;
  ProgressMeter meter(total, kProgressStep, coop.progress);
  coop::Executor exec;
  exec.read = [&](std::span<const Segment> slot, std::span<const Window> staging) {
    return coop.runtime->Read(ReadJob{&*every, staging, all, nullptr, nullptr, {}, coop.settings},
                              slot);
  };
  exec.read_own = read_own;
  exec.sink = &sink;
  exec.copied = [&meter](std::uint64_t n) { meter.Add(n); };
  return coop.session->Run(request, exec);
}

Result<LoadStats> ReadCooperative(const CoopContext& coop, const ReadJob& job,
                                  const DeviceLoad& device, std::span<const DeviceTensor> local,
                                  std::span<const Segment> segments) {
  ReadJob own_job = job;
  own_job.observer = nullptr;
  auto read_own = [&](std::span<const Segment> own) {
    return ReadSegments(*coop.runtime, own_job, device, local, own);
  };
  if (device.cuda) {  // copies out of staging go to this member's device
    const LoaderOptions& options = coop.runtime->options();
    auto sink = CoopDeviceSink::Start(device.cuda, options.device_streams, local);
    if (!sink) return std::move(sink).error();
    auto stats = RunCooperative(coop, segments, **sink, read_own, false);
    if (stats && (*sink)->attached()) {
      stats->device = DeviceName(options.device);
      stats->transfer = (*sink)->Describe();
    }
    return stats;
  }
  FaultInPolicy* fault_in = job.fault_in;
  auto sink = coop::HostSink(fault_in == nullptr ? std::function<void(std::byte*, std::size_t)>()
                                                 : [fault_in](std::byte* dst, std::size_t n) {
                                                     fault_in->BeforeRead(dst, n);
                                                   });
  // Library-owned host memory: what every member needs whole may be mapped
  // from the node's one copy.
  return RunCooperative(coop, segments, *sink, read_own, fault_in != nullptr);
}

Result<std::unique_ptr<CoopDeviceSink>> CoopDeviceSink::Start(
    std::shared_ptr<const CudaRuntime> cuda, unsigned streams,
    std::span<const DeviceTensor> local) {
  auto copier = StagedCopier::Start(std::move(cuda), streams);
  if (!copier) return std::move(copier).error();
  return std::unique_ptr<CoopDeviceSink>(new CoopDeviceSink(std::move(*copier), local));
}

Status CoopDeviceSink::Attach(std::byte* staging, std::size_t size) {
  // Zeroed before any copy: the copies on other streams land after it.
  for (const DeviceTensor& t : local_) {
    if (!t.zero_fill) continue;
    if (Status s = copier_->Zero(t.device, t.size, t.name); !s) return s;
  }
  if (Status s = copier_->Synchronize("zeroing padding"); !s) return s;
  if (Status s = copier_->Register(staging, size); !s) return s;
  attached_ = true;
  return {};
}

Status CoopDeviceSink::Copy(const coop::CopyRuns& runs) {
  const std::string_view name = runs.tag < local_.size() ? local_[runs.tag].name : "";
  return copier_->Copy(runs.dst, runs.dst_stride, runs.src, runs.src_stride, runs.length,
                       runs.rows, name);
}

Status CoopDeviceSink::Flush() {
  ++waves_;
  return copier_->Synchronize("the copies of wave " + std::to_string(waves_));
}

void CoopDeviceSink::Detach() { copier_->Unregister(); }

std::string CoopDeviceSink::Describe() const {
  return "cooperative: " + std::to_string(copier_->copies()) +
         " copies from the node's shared staging (" +
         std::to_string(copier_->registered_bytes()) + " bytes registered) on " +
         std::to_string(copier_->streams()) + " streams";
}

}  // namespace shardload
