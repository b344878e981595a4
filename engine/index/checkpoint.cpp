// Checkpoint: the immutable description built by the resolver; lookups by
// binary search over the name-sorted tensors.
// Thread-safe once built: only const members after construction.
#include "shardload/checkpoint.h"

#include <algorithm>

#include "index/resolver.h"
#include "index/shard_file.h"

namespace shardload {

std::uint64_t TensorInfo::NumElements() const {
  // The header reader accepted the shape, so the product fits in 64 bits
  // unless a dimension is 0 (then the product is 0 whatever follows).
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) {
    if (d == 0) return 0;
  }
  for (std::uint64_t d : shape) n *= d;
  return n;
}

Result<Checkpoint> Checkpoint::Open(const std::string& path) { return index::Resolve(path); }

Result<Checkpoint> Checkpoint::ByteRanges(std::uint32_t shard,
                                          std::span<const std::uint64_t> offsets,
                                          std::span<const std::uint64_t> lengths) const {
  if (shard >= shards_.size()) {
    return MakeError(ErrorCode::kInvalidArgument, path_, "",
                     "no shard " + std::to_string(shard) + " in this checkpoint");
  }
  if (offsets.size() != lengths.size()) {
    return MakeError(ErrorCode::kInvalidArgument, path_, "",
                     "byte ranges: offsets and lengths differ in count");
  }
  ShardInfo info = shards_[shard];
  std::vector<TensorInfo> ranges;
  ranges.reserve(offsets.size());
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] > info.file_size || lengths[i] > info.file_size - offsets[i]) {
      return MakeError(ErrorCode::kInvalidArgument, info.path, "",
                       "byte range " + std::to_string(offsets[i]) + "+" +
                           std::to_string(lengths[i]) + " is past the end of the file (" +
                           std::to_string(info.file_size) + " bytes)");
    }
    ranges.push_back(TensorInfo{std::to_string(i), DType::kU8, {lengths[i]}, 0, offsets[i],
                                lengths[i]});
  }
  info.num_tensors = static_cast<std::uint32_t>(ranges.size());
  std::vector<std::shared_ptr<const internal::ShardFile>> files;
  if (shard < files_.size()) files.push_back(files_[shard]);
  return Checkpoint(info.path, "", {info}, std::move(ranges), {}, {}, std::move(files));
}

Checkpoint::Checkpoint(std::string path, std::string index_path, std::vector<ShardInfo> shards,
                       std::vector<TensorInfo> tensors, std::vector<Warning> warnings,
                       Metadata index_metadata,
                       std::vector<std::shared_ptr<const internal::ShardFile>> files)
    : path_(std::move(path)),
      index_path_(std::move(index_path)),
      shards_(std::move(shards)),
      tensors_(std::move(tensors)),
      warnings_(std::move(warnings)),
      index_metadata_(std::move(index_metadata)),
      files_(std::move(files)) {
  auto by_name = [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; };
  if (!std::is_sorted(tensors_.begin(), tensors_.end(), by_name)) {
    std::sort(tensors_.begin(), tensors_.end(), by_name);
  }
}

const TensorInfo* Checkpoint::Find(std::string_view name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorInfo& t, std::string_view n) { return std::string_view(t.name) < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

std::uint64_t Checkpoint::TotalBytes() const {
  std::uint64_t total = 0;
  for (const TensorInfo& t : tensors_) total += t.size;
  return total;
}

}  // namespace shardload
