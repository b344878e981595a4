// WriteSafetensors and WriteCheckpoint: validate and lay out everything first
// (writer_layout.h), then stream each file through AtomicFile. Tensor data
// comes from caller spans or fillers through one bounded buffer, so files far
// larger than memory can be written. Shards are written before the index.
// Thread-safe: no shared state; concurrent writes of one path each stay
// atomic and the last rename wins.
#include "shardload/writer.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <system_error>

#include "format/atomic_file.h"
#include "format/writer_layout.h"
#include "util/checked.h"
#include "util/errno_error.h"

namespace shardload {
namespace {

using format::AtomicFile;
using format::SafetensorsLayout;
using format::TensorRefs;

// Appends one tensor's bytes; a throwing filler becomes an Error.
Status AppendTensor(AtomicFile& file, const TensorData& t, std::uint64_t size) {
  if (!t.fill) return file.Append(t.bytes);
  try {
    return file.AppendGenerated(size, t.fill);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, file.path(), t.name,
                     std::string("the tensor's fill callback threw: ") + e.what());
  } catch (...) {
    return MakeError(ErrorCode::kInternal, file.path(), t.name, "the tensor's fill callback threw");
  }
}

Status WriteLaidOut(const std::string& path, const TensorRefs& tensors,
                    const SafetensorsLayout& layout) {
  std::uint64_t total = layout.header.size() + layout.data_size;
  AtomicFile file(
      path, static_cast<std::size_t>(std::min<std::uint64_t>(total, format::kWriteBufferSize)));
  if (Status s = file.Open(); !s.ok()) return s;
  const std::string& header = layout.header;
  if (Status s = file.Append(std::as_bytes(std::span(header.data(), header.size()))); !s.ok()) {
    return s;
  }
  for (std::size_t index : layout.order) {
    if (Status s = AppendTensor(file, *tensors[index], layout.sizes[index]); !s.ok()) return s;
  }
  return file.Commit();
}

Status CreateDirectory(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ErrnoError(dir, "create directory", ec.value());
  return {};
}

Status CheckPrefix(const std::string& dir, const std::string& prefix) {
  if (prefix.empty() || prefix.find('/') != std::string::npos || prefix == "." || prefix == "..") {
    return MakeError(ErrorCode::kInvalidArgument, dir, "",
                     "checkpoint prefix `" + prefix + "` must be a non-empty file name stem");
  }
  return {};
}

// One shard to write: its file name, tensors and layout.
struct PlannedShard {
  std::string file_name;
  TensorRefs tensors;
  SafetensorsLayout layout;
};

struct PlannedCheckpoint {
  std::vector<PlannedShard> shards;
  std::uint64_t total_size = 0;  // tensor bytes, headers excluded
  bool indexed = false;
};

// Sizes of all tensors and their sum, refusing what no shard could hold.
Result<std::vector<std::uint64_t>> CheckpointSizes(const std::string& dir, const TensorRefs& all,
                                                   std::uint64_t* total_size) {
  std::vector<std::uint64_t> sizes;
  *total_size = 0;
  for (const TensorData* t : all) {
    Result<std::uint64_t> size = format::ValidatedTensorSize(dir, *t);
    if (!size) return std::move(size).error();
    std::optional<std::uint64_t> sum = CheckedAdd(*total_size, *size);
    if (!sum) {
      return MakeError(ErrorCode::kValidationOverflow, dir, t->name,
                       "the checkpoint's total size would exceed 2^64 bytes");
    }
    sizes.push_back(*size);
    *total_size = *sum;
  }
  if (Status s = format::CheckUniqueNames(dir, all); !s.ok()) return std::move(s).error();
  return sizes;
}

// Validates everything and lays out every shard before any file is written.
Result<PlannedCheckpoint> PlanCheckpoint(const std::string& dir, const TensorRefs& all,
                                         const CheckpointWriteOptions& options) {
  if (Status s = CheckPrefix(dir, options.prefix); !s.ok()) return std::move(s).error();
  PlannedCheckpoint plan;
  Result<std::vector<std::uint64_t>> sizes = CheckpointSizes(dir, all, &plan.total_size);
  if (!sizes) return std::move(sizes).error();
  std::vector<std::vector<std::size_t>> split =
      format::SplitIntoShards(*sizes, options.max_shard_size);
  plan.indexed = split.size() > 1 || options.always_index;
  plan.shards.resize(split.size());
  for (std::size_t i = 0; i < split.size(); ++i) {
    PlannedShard& shard = plan.shards[i];
    shard.file_name = format::ShardFileName(options.prefix, i, split.size(), plan.indexed);
    for (std::size_t index : split[i]) shard.tensors.push_back(all[index]);
    Result<SafetensorsLayout> layout = format::LayOutSafetensors(
        dir + "/" + shard.file_name, shard.tensors, options.shard_metadata);
    if (!layout) return std::move(layout).error();
    shard.layout = std::move(layout).value();
  }
  return plan;
}

TensorRefs RefsOf(std::span<const TensorData> tensors) {
  TensorRefs refs;
  refs.reserve(tensors.size());
  for (const TensorData& t : tensors) refs.push_back(&t);
  return refs;
}

}  // namespace

Status WriteSafetensors(const std::string& path, std::span<const TensorData> tensors,
                        const std::optional<Metadata>& metadata) {
  TensorRefs refs = RefsOf(tensors);
  Result<SafetensorsLayout> layout = format::LayOutSafetensors(path, refs, metadata);
  if (!layout) return std::move(layout).error();
  return WriteLaidOut(path, refs, *layout);
}

Status WriteCheckpoint(const std::string& dir, std::span<const TensorData> tensors,
                       const CheckpointWriteOptions& options) {
  Result<PlannedCheckpoint> plan = PlanCheckpoint(dir, RefsOf(tensors), options);
  if (!plan) return std::move(plan).error();
  if (Status s = CreateDirectory(dir); !s.ok()) return s;
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (const PlannedShard& shard : plan->shards) {
    Status s = WriteLaidOut(dir + "/" + shard.file_name, shard.tensors, shard.layout);
    if (!s.ok()) return s;
    for (const TensorData* t : shard.tensors) weight_map.emplace_back(t->name, shard.file_name);
  }
  if (!plan->indexed) return {};
  std::string index_path = dir + "/" + options.prefix + ".safetensors.index.json";
  return format::WriteFileAtomically(index_path,
                                     format::IndexJson(plan->total_size, std::move(weight_map)));
}

}  // namespace shardload
