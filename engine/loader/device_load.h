// The loader's side of a load to a CUDA device (docs/device.md): the local
// tensors handed to engine/device's waves, each wave read by the read
// runtime (read_runtime.h), the GPUDirect Storage (cuFile) reads that bypass
// them, and the words LoadStats reports. ReadSegments is where every load
// path (plain, cooperative's own reads) turns to a device when the Loader
// has one; the loader allocates the device memory (LoadedCheckpoint).
// Thread-safe: functions over their arguments (LoadThroughDevice runs on the
// calling thread, plus the cuFile threads it joins and the runtime's
// workers); a GdsAccess belongs to one Loader (thread-compatible).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "device/cuda_runtime.h"
#include "device/cufile.h"
#include "device/waves.h"
#include "io/file_table.h"
#include "loader/read_runtime.h"
#include "loader/load_items.h"
#include "plan/read_op.h"

namespace shardload {

// cuFile reads land in place only on 4 KiB boundaries (file and device).
inline constexpr std::uint64_t kGdsAlignment = 4096;

// A Loader's GPUDirect Storage: the driver session when `gds` is asked for
// and usable, else why not (empty when not asked for).
struct GdsState {
  std::shared_ptr<const CuFileSession> session;
  std::string reason;  // "GDS not used (...): staged through pinned host memory"
};

// A Loader's GPUDirect Storage (LoaderOptions::gds), opened on the first
// device load that may use it: For(mode) is null when not asked for, else
// the session or the reason it is not used (a kBuffered read, no libcufile,
// the driver does not open, compatibility mode only). Never an error.
class GdsAccess {
 public:
  explicit GdsAccess(bool asked) : asked_(asked) {}
  const GdsState* For(IoMode mode);

 private:
  bool asked_;
  std::optional<GdsState> opened_;
  GdsState buffered_;
};

// What a device load needs besides the runtime, its job and segments.
struct DeviceLoad {
  std::shared_ptr<const CudaRuntime> cuda;  // null: a host load
  const GdsState* gds = nullptr;            // may be null: no GDS
  // Library-owned device memory (Load, Reload), registered with
  // cuFileBufRegister while cuFile reads into it; empty for LoadInto.
  std::span<std::byte> owned;
};

// Runs SEGMENTS (dst: device addresses inside LOCAL, tag = index): with a
// GDS session, the aligned O_DIRECT parts by cuFileRead straight into device
// memory while the rest goes through RunDeviceWaves (the runtime's options'
// staging and streams; each wave one RUNTIME.Read); JOB.progress counts over
// the whole load. Sets LoadStats::device and ::transfer (what went which
// way, or why GDS was not used). Errors: the runtime's, the waves'
// (device/waves.h), or kIoError for a cuFile read naming the file, tensor
// and offset; kCancelled.
Result<LoadStats> LoadThroughDevice(ReadRuntime& runtime, const ReadJob& job,
                                    const DeviceLoad& load, std::span<const DeviceTensor> local,
                                    std::span<const Segment> segments);

// Reads SEGMENTS where they point: host memory by RUNTIME.Read, or, when
// LOAD has a CUDA runtime, device memory by LoadThroughDevice.
Result<LoadStats> ReadSegments(ReadRuntime& runtime, const ReadJob& job, const DeviceLoad& load,
                               std::span<const DeviceTensor> local,
                               std::span<const Segment> segments);

// The local tensors of a load, by tag: the slices of ITEMS at DATA
// (zero_fill: padding).
std::vector<DeviceTensor> LocalTensors(std::span<const LoadItem> items,
                                       std::span<std::byte* const> data);

// LoadStats::memory of a load into device memory.
std::string DeviceMemory(const Device& device);

}  // namespace shardload
