// The loader's side of device loads (device_load.h).
// Thread-safe: LoadThroughDevice's progress wrapper is called from the
// reader's workers (an atomic flag; `before` changes only between waves).
#include "loader/device_load.h"

#include <dlfcn.h>

#include <atomic>
#include <utility>

namespace shardload {

Result<LoadStats> LoadThroughDevice(std::shared_ptr<const CudaRuntime> cuda,
                                    const LoadOptions& options, const std::string& gds_reason,
                                    std::span<const DeviceTensor> local,
                                    std::span<const Segment> segments, const HostReader& read) {
  // Each wave's meter counts from the bytes of the waves before it.
  std::uint64_t total = 0, before = 0;
  for (const Segment& s : segments) total += s.length * s.count;
  std::atomic<bool> failed{false};
  ProgressFn progress;
  if (options.progress) {
    progress = [&](std::uint64_t done, std::uint64_t) {
      if (failed.load(std::memory_order_relaxed)) return;
      try {
        options.progress(before + done, total);
      } catch (...) {
        failed.store(true, std::memory_order_relaxed);
        throw;  // the wave's ProgressMeter swallows it
      }
    };
  }
  WaveReport report;
  auto stats = RunDeviceWaves(
      std::move(cuda), local, segments, WaveOptions{options.staging_bytes, options.device_streams},
      [&](std::span<const Segment> wave) {
        auto got = read(wave, progress);
        if (got) before += got->bytes;
        return got;
      },
      &report);
  if (!stats) return stats;
  stats->device = DeviceName(options.device);
  stats->transfer = std::to_string(report.waves) + " waves, " + std::to_string(report.copies) +
                    " copies through " + std::to_string(report.staging_bytes) +
                    " bytes of pinned staging on " + std::to_string(report.streams) + " streams";
  if (!gds_reason.empty()) stats->transfer += "; " + gds_reason;
  return stats;
}

std::vector<DeviceTensor> LocalTensors(const std::vector<LoadedTensor>& loaded) {
  std::vector<DeviceTensor> out;
  out.reserve(loaded.size());
  for (const LoadedTensor& t : loaded) out.push_back({t.data.data(), t.data.size(), false, t.name});
  return out;
}

std::vector<DeviceTensor> LocalTensors(std::span<const Destination> destinations) {
  std::vector<DeviceTensor> out;
  out.reserve(destinations.size());
  for (const Destination& d : destinations) {
    out.push_back({static_cast<std::byte*>(d.data), d.size, false, d.name});
  }
  return out;
}

std::vector<DeviceTensor> LocalTensors(std::span<const TpItem> items,
                                       std::span<std::byte* const> data) {
  std::vector<DeviceTensor> out;
  out.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    out.push_back({data[i], items[i].slice.size, items[i].slice.zero_fill,
                   items[i].source->name});
  }
  return out;
}

std::string DeviceMemory(const Device& device) {
  return "device memory on " + DeviceName(device) + " (one cudaMalloc)";
}

std::string GdsFallbackReason(bool direct) {
  void* cufile = ::dlopen("libcufile.so.0", RTLD_NOW | RTLD_LOCAL);
  if (cufile == nullptr) cufile = ::dlopen("libcufile.so", RTLD_NOW | RTLD_LOCAL);
  std::string why = cufile == nullptr ? "libcufile not found"
                                      : "libcufile found, but this build has no cuFile path";
  if (cufile != nullptr) ::dlclose(cufile);
  if (!direct) why += "; GDS also needs --direct";
  return "GDS not used (" + why + "): staged through pinned host memory";
}

}  // namespace shardload
