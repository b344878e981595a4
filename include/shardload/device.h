// Where a load puts its tensors: host memory (the default) or the memory of
// one CUDA device. Parsing and naming of "cpu" / "cuda:N".
// Thread-compatible value type; the functions are thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "shardload/error.h"

namespace shardload {

struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // the CUDA device ordinal (kCuda only)

  static Device Cpu() { return {}; }
  static Device Cuda(int index) { return {Kind::kCuda, index}; }
  bool is_cuda() const { return kind == Kind::kCuda; }
  friend bool operator==(const Device&, const Device&) = default;
};

// "cpu", "cuda" (device 0) or "cuda:N" (N a decimal ordinal below 2^31).
// Anything else: kInvalidArgument quoting the text.
Result<Device> ParseDevice(std::string_view text);

// "cpu" or "cuda:N".
std::string DeviceName(const Device& device);

}  // namespace shardload
