// Checkpoint: the immutable description built by the resolver; lookups by
// binary search over the name-sorted tensors.
// Thread-safe once built: only const members after construction.
#include "shardload/checkpoint.h"

#include <algorithm>

#include "index/resolver.h"

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

Checkpoint::Checkpoint(std::string path, std::string index_path, std::vector<ShardInfo> shards,
                       std::vector<TensorInfo> tensors, std::vector<Warning> warnings,
                       Metadata index_metadata)
    : path_(std::move(path)),
      index_path_(std::move(index_path)),
      shards_(std::move(shards)),
      tensors_(std::move(tensors)),
      warnings_(std::move(warnings)),
      index_metadata_(std::move(index_metadata)) {
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
