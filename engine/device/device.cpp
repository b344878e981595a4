// ParseDevice and DeviceName (include/shardload/device.h).
// Thread-safe: pure functions.
#include <charconv>
#include <string>

#include "shardload/device.h"

namespace shardload {

Result<Device> ParseDevice(std::string_view text) {
  if (text == "cpu") return Device::Cpu();
  if (text == "cuda") return Device::Cuda(0);
  constexpr std::string_view kPrefix = "cuda:";
  if (text.substr(0, kPrefix.size()) == kPrefix && text.size() > kPrefix.size()) {
    std::string_view digits = text.substr(kPrefix.size());
    int index = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && digits[0] != '+' &&
        index >= 0) {
      return Device::Cuda(index);
    }
  }
  return MakeError(ErrorCode::kInvalidArgument, "", "",
                   "device \"" + std::string(text) + "\": expected cpu, cuda or cuda:N");
}

std::string DeviceName(const Device& device) {
  return device.is_cuda() ? "cuda:" + std::to_string(device.index) : "cpu";
}

}  // namespace shardload
