// The loader's side of a load to a CUDA device (docs/device.md): the local
// tensors handed to engine/device's waves, the reader that feeds them, the
// GPUDirect Storage (cuFile) reads that bypass them, and the words LoadStats
// reports. Loader::Impl::Execute calls LoadThroughDevice when
// LoadOptions::device is CUDA; AllocateOwned makes the device memory.
// Thread-safe: functions over their arguments (LoadThroughDevice runs on the
// calling thread, plus the cuFile threads it joins; READ may use workers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "device/cuda_runtime.h"
#include "device/cufile.h"
#include "device/waves.h"
#include "io/file_table.h"
#include "loader/tp_load.h"
#include "plan/read_op.h"
#include "shardload/loader.h"

namespace shardload {

using ProgressFn = std::function<void(std::uint64_t, std::uint64_t)>;

// cuFile reads land in place only on 4 KiB boundaries (file and device).
inline constexpr std::uint64_t kGdsAlignment = 4096;

// Reads SEGMENTS (host addresses), reporting progress to the function given.
using HostReader =
    std::function<Result<LoadStats>(std::span<const Segment>, const ProgressFn&)>;

// A Loader's GPUDirect Storage: the driver session when `gds` is asked for
// and usable, else why not (empty when not asked for).
struct GdsState {
  std::shared_ptr<const CuFileSession> session;
  std::string reason;  // "GDS not used (...): staged through pinned host memory"
};

// Opens cuFile for OPTIONS (gds, mode): a session, or the reason it is not
// used (not asked for, --buffered, no libcufile, the driver does not open,
// compatibility mode only). Never an error.
GdsState OpenGds(const LoadOptions& options);

// What a device load needs besides its tensors and segments.
struct DeviceLoad {
  std::shared_ptr<const CudaRuntime> cuda;
  const GdsState* gds = nullptr;  // may be null: no GDS
  FileTable* files = nullptr;     // the load's files (cuFile needs their O_DIRECT fds)
  unsigned threads = 1;           // cuFile read threads
  // Library-owned device memory (Load, Reload), registered with
  // cuFileBufRegister while cuFile reads into it; empty for LoadInto.
  std::span<std::byte> owned;
};

// Runs SEGMENTS (dst: device addresses inside LOCAL, tag = index): with a
// GDS session, the aligned O_DIRECT parts by cuFileRead straight into device
// memory while the rest goes through RunDeviceWaves (OPTIONS' staging and
// streams); options.progress counts over the whole load. Sets
// LoadStats::device and ::transfer (what went which way, or why GDS was not
// used). Errors: the reader's, the waves' (device/waves.h), or kIoError for
// a cuFile read naming the file, tensor and offset; kCancelled.
Result<LoadStats> LoadThroughDevice(const DeviceLoad& load, const LoadOptions& options,
                                    std::span<const DeviceTensor> local,
                                    std::span<const Segment> segments, const HostReader& read);

// The local tensors of a load, by tag: the slices of ITEMS at DATA
// (zero_fill: padding).
std::vector<DeviceTensor> LocalTensors(std::span<const TpItem> items,
                                       std::span<std::byte* const> data);

// LoadStats::memory of a load into device memory.
std::string DeviceMemory(const Device& device);

}  // namespace shardload
