// RunDeviceWaves and CutWaves (waves.h).
// Thread-compatible: everything runs on the calling thread; the copies run
// on CUDA streams and are waited for (events) before their staging is reused
// and before this returns, also on error.
#include "device/waves.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "device/clip.h"
#include "device/device_memory.h"
#include "device/streams.h"

namespace shardload {
namespace {

std::uint64_t AlignUp(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// The segments of each tensor (by tag), or kInternal for a tag out of range.
Result<std::vector<std::vector<const Segment*>>> ByTensor(std::span<const DeviceTensor> tensors,
                                                          std::span<const Segment> segments) {
  std::vector<std::vector<const Segment*>> by(tensors.size());
  for (const Segment& s : segments) {
    if (s.tag >= tensors.size()) {
      return MakeError(ErrorCode::kInternal, "", "",
                       "device load: segment tag " + std::to_string(s.tag) + " names no tensor");
    }
    if (s.length > 0) by[s.tag].push_back(&s);
  }
  return by;
}

// The reads of one wave into STAGING (one half of the ring): each tensor's
// segments clipped to each piece and moved from device to staging addresses.
std::vector<Segment> StageWave(std::span<const WavePiece> wave,
                               std::span<const DeviceTensor> tensors,
                               const std::vector<std::vector<const Segment*>>& by_tensor,
                               std::byte* staging) {
  std::vector<Segment> reads;
  for (const WavePiece& p : wave) {
    const DeviceTensor& t = tensors[p.tensor];
    const auto lo = reinterpret_cast<std::uintptr_t>(t.device) + p.begin;
    std::byte* to = staging + p.staging;
    if (t.zero_fill) std::memset(to, 0, p.length);
    const std::size_t first = reads.size();
    for (const Segment* s : by_tensor[p.tensor]) ClipSegment(*s, lo, lo + p.length, reads);
    for (std::size_t i = first; i < reads.size(); ++i) {
      reads[i].dst = to + (reinterpret_cast<std::uintptr_t>(reads[i].dst) - lo);
    }
  }
  return reads;
}

void Accumulate(LoadStats& sum, const LoadStats& wave, bool first) {
  if (first) {
    sum.backend = wave.backend;
    sum.backend_reason = wave.backend_reason;
    sum.threads = wave.threads;
    sum.mode = wave.mode;
  }
  if (sum.mode_note.empty()) sum.mode_note = wave.mode_note;
  sum.bytes += wave.bytes;
  sum.bytes_read += wave.bytes_read;
  sum.bytes_direct += wave.bytes_direct;
  sum.bytes_buffered += wave.bytes_buffered;
  sum.read_ops += wave.read_ops;
  sum.short_reads += wave.short_reads;
  sum.retries += wave.retries;
}

}  // namespace

std::vector<std::vector<WavePiece>> CutWaves(std::span<const DeviceTensor> tensors,
                                             std::uint64_t half) {
  std::vector<std::vector<WavePiece>> waves;
  std::uint64_t cursor = half;  // no wave open yet
  for (std::uint32_t i = 0; i < tensors.size(); ++i) {
    std::uint64_t done = 0;
    while (done < tensors[i].size) {
      std::uint64_t at = AlignUp(cursor, kStagingAlignment);
      if (at >= half) {
        waves.emplace_back();
        at = 0;
      }
      const std::uint64_t length = std::min(tensors[i].size - done, half - at);
      waves.back().push_back(WavePiece{i, done, length, at});
      done += length;
      cursor = at + length;
    }
  }
  return waves;
}

Result<LoadStats> RunDeviceWaves(std::shared_ptr<const CudaRuntime> runtime,
                                 std::span<const DeviceTensor> tensors,
                                 std::span<const Segment> segments, const WaveOptions& options,
                                 const SegmentReader& read, WaveReport* report) {
  const CudaRuntime& rt = *runtime;
  if (options.streams == 0 || options.staging_bytes < 2 * kStagingAlignment) {
    return MakeError(ErrorCode::kInvalidArgument, "", "",
                     "device staging needs at least " + std::to_string(2 * kStagingAlignment) +
                         " bytes and one stream");
  }
  auto by_tensor = ByTensor(tensors, segments);
  if (!by_tensor) return std::move(by_tensor).error();
  const std::uint64_t half = options.staging_bytes / 2 / kStagingAlignment * kStagingAlignment;
  const std::vector<std::vector<WavePiece>> waves = CutWaves(tensors, half);
  LoadStats sum;
  if (waves.empty()) return sum;
  // One wave needs only what it uses of one half.
  const WavePiece& end = waves[0].back();
  const std::uint64_t ring =
      waves.size() > 1 ? 2 * half : AlignUp(end.staging + end.length, kStagingAlignment);
  if (CudaStatus s = rt.Activate(); s != kCudaSuccess) {
    return CudaError(rt, ErrorCode::kUnsupported, "", "cudaSetDevice", s);
  }
  auto staging = PinnedBuffer::Allocate(runtime, ring);
  if (!staging) return std::move(staging).error();
  CopyStreams streams(rt);  // declared after staging: waits before it is freed
  if (Status s = streams.Create(options.streams); !s) return std::move(s).error();

  std::uint64_t copies = 0;
  for (std::size_t k = 0; k < waves.size(); ++k) {
    const unsigned h = static_cast<unsigned>(k % 2);
    std::byte* base = staging->data() + h * half;
    const std::string name = "wave " + std::to_string(k + 1) + " of " + std::to_string(waves.size());
    if (Status s = streams.Wait(h, "the copies before " + name); !s) return std::move(s).error();
    std::vector<Segment> reads = StageWave(waves[k], tensors, *by_tensor, base);
    auto stats = read(reads);
    if (!stats) return std::move(stats).error();
    Accumulate(sum, *stats, k == 0);
    for (std::size_t i = 0; i < waves[k].size(); ++i) {
      const WavePiece& p = waves[k][i];
      const DeviceTensor& t = tensors[p.tensor];
      CudaStatus st = rt.memcpy_async(t.device + p.begin, base + p.staging, p.length,
                                      kCudaMemcpyHostToDevice, streams.stream(copies++));
      if (st != kCudaSuccess) {
        return CudaError(rt, ErrorCode::kIoError, std::string(t.name),
                         "cudaMemcpyAsync of " + std::to_string(p.length) + " bytes (" + name +
                             ")",
                         st);
      }
    }
    if (Status s = streams.Record(h); !s) return std::move(s).error();
  }
  if (Status s = streams.Finish(); !s) return std::move(s).error();
  if (report != nullptr) *report = WaveReport{waves.size(), copies, staging->size(), streams.size()};
  return sum;
}

}  // namespace shardload
