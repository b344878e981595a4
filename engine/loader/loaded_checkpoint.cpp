// LoadedCheckpoint (loader.h): the memory a load fills and its views.
// Thread-compatible: its accessors only read.
#include <algorithm>
#include <string_view>

#include "loader/loader_impl.h"

namespace shardload {
namespace {

alignas(64) std::byte kNoBytes[64];  // data() of empty tensors without an arena

}  // namespace

LoadedCheckpoint::LoadedCheckpoint() = default;
LoadedCheckpoint::LoadedCheckpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoadedCheckpoint::LoadedCheckpoint(LoadedCheckpoint&&) noexcept = default;
LoadedCheckpoint& LoadedCheckpoint::operator=(LoadedCheckpoint&&) noexcept = default;
LoadedCheckpoint::~LoadedCheckpoint() = default;

const std::vector<LoadedTensor>& LoadedCheckpoint::tensors() const {
  static const std::vector<LoadedTensor> kNone;
  return impl_ ? impl_->tensors : kNone;
}

const LoadedTensor* LoadedCheckpoint::Find(std::string_view name) const {
  const std::vector<LoadedTensor>& all = tensors();
  auto it = std::lower_bound(all.begin(), all.end(), name,
                             [](const LoadedTensor& t, std::string_view n) { return t.name < n; });
  return it != all.end() && it->name == name ? &*it : nullptr;
}

const LoadStats& LoadedCheckpoint::stats() const {
  static const LoadStats kNone;
  return impl_ ? impl_->stats : kNone;
}

Device LoadedCheckpoint::device() const { return impl_ ? impl_->device : Device(); }

Result<std::byte*> LoadedCheckpoint::Impl::Allocate(const std::shared_ptr<const CudaRuntime>& cuda,
                                                    Device where, std::uint64_t size,
                                                    bool huge_pages) {
  device = where;
  if (cuda) {
    auto memory = DeviceBuffer::Allocate(cuda, size);
    if (!memory) return std::move(memory).error();
    device_memory = std::move(*memory);
    return device_memory.data() != nullptr ? device_memory.data() : kNoBytes;
  }
  auto memory = MappedMemory::Map(size, huge_pages);
  if (!memory) return std::move(memory).error();
  arena = std::move(*memory);
  return arena.data() != nullptr ? arena.data() : kNoBytes;
}

}  // namespace shardload
