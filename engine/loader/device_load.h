// The loader's side of a load to a CUDA device (docs/device.md): the local
// tensors handed to engine/device's waves, the reader that feeds them, and
// the words LoadStats reports. Loader::Impl::Execute calls LoadThroughDevice
// when LoadOptions::device is CUDA; AllocateOwned makes the device memory.
// Thread-safe: functions over their arguments (LoadThroughDevice runs on the
// calling thread; READ may use workers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "device/cuda_runtime.h"
#include "device/waves.h"
#include "loader/tp_load.h"
#include "plan/read_op.h"
#include "shardload/loader.h"

namespace shardload {

using ProgressFn = std::function<void(std::uint64_t, std::uint64_t)>;

// Reads SEGMENTS (host addresses), reporting progress to the function given.
using HostReader =
    std::function<Result<LoadStats>(std::span<const Segment>, const ProgressFn&)>;

// Runs SEGMENTS (dst: device addresses inside LOCAL, tag = index) through
// RunDeviceWaves with OPTIONS' staging and streams; options.progress counts
// over the whole load. Sets LoadStats::device and ::transfer (GDS_REASON
// appended when not empty).
Result<LoadStats> LoadThroughDevice(std::shared_ptr<const CudaRuntime> cuda,
                                    const LoadOptions& options, const std::string& gds_reason,
                                    std::span<const DeviceTensor> local,
                                    std::span<const Segment> segments, const HostReader& read);

// The local tensors of a load, by tag: a LoadedCheckpoint's, the caller's
// destinations, or a rank's slices at DATA (zero_fill: padding).
std::vector<DeviceTensor> LocalTensors(const std::vector<LoadedTensor>& loaded);
std::vector<DeviceTensor> LocalTensors(std::span<const Destination> destinations);
std::vector<DeviceTensor> LocalTensors(std::span<const TpItem> items,
                                       std::span<std::byte* const> data);

// LoadStats::memory of a load into device memory.
std::string DeviceMemory(const Device& device);

// Why a load asking for GPUDirect Storage is staged instead (not
// implemented): whether libcufile loads, and whether DIRECT was asked for.
std::string GdsFallbackReason(bool direct);

}  // namespace shardload
