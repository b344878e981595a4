// Device loads through pinned staging: a load's local tensors are cut into
// waves that fit half of a pinned host ring; wave k is read into one half
// (by the loader's reader: io_uring workers, as for a host load) while the
// copies of wave k-1 run from the other half to the device on a few streams.
//
//   tensors (device addresses) --CutWaves--> waves of pieces (staging offsets)
//   segments --ClipSegment to each piece, rebased to staging--> reader
//   each piece --cudaMemcpyAsync--> device, one event per stream per half
//
// Local tensors are contiguous on the device and in staging, so each piece is
// one contiguous copy. Bytes of a zero_fill tensor that no segment covers
// (vocab padding) are zeroed in staging before the read.
// Thread-compatible: one RunDeviceWaves at a time per set of tensors; it runs
// on the calling thread (the reader may use workers of its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "device/cuda_runtime.h"
#include "plan/read_op.h"
#include "shardload/error.h"
#include "shardload/stats.h"

namespace shardload {

// One local tensor of a device load.
struct DeviceTensor {
  std::byte* device = nullptr;  // its first byte in device memory (never dereferenced)
  std::uint64_t size = 0;
  bool zero_fill = false;       // bytes no segment covers must read as zero
  std::string_view name;        // for errors
};

struct WaveOptions {
  std::uint64_t staging_bytes = 256ULL << 20;  // the pinned ring (both halves)
  unsigned streams = 2;
};

// Reads SEGMENTS (dst in host memory) and reports what it read.
using SegmentReader = std::function<Result<LoadStats>(std::span<const Segment>)>;

// A contiguous part of one tensor staged in one wave.
struct WavePiece {
  std::uint32_t tensor = 0;
  std::uint64_t begin = 0;    // offset in the tensor
  std::uint64_t length = 0;   // > 0
  std::uint64_t staging = 0;  // offset in the half of the ring
};

// Packs the non-empty tensors, in order, into waves of at most HALF staging
// bytes each; a piece starts on a kStagingAlignment boundary, a tensor larger
// than what is left of a wave continues in the next one.
// REQUIRES: HALF >= kStagingAlignment.
inline constexpr std::uint64_t kStagingAlignment = 4096;
std::vector<std::vector<WavePiece>> CutWaves(std::span<const DeviceTensor> tensors,
                                             std::uint64_t half);

struct WaveReport {
  std::uint64_t waves = 0;
  std::uint64_t copies = 0;
  std::uint64_t staging_bytes = 0;  // registered
  unsigned streams = 0;
};

// Loads TENSORS: SEGMENTS have tag = index into TENSORS and dst = device
// addresses inside their tensor. Returns the reader's stats summed over the
// waves (bytes, bytes_read, read_ops, ...). Errors: the reader's first error;
// kResourceExhausted for staging; kIoError for a copy or stream error (a late
// one names the wave); the device's memory is then unspecified. All staging,
// streams and events are released before it returns.
Result<LoadStats> RunDeviceWaves(std::shared_ptr<const CudaRuntime> runtime,
                                 std::span<const DeviceTensor> tensors,
                                 std::span<const Segment> segments, const WaveOptions& options,
                                 const SegmentReader& read, WaveReport* report = nullptr);

}  // namespace shardload
