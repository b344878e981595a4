// Ordered key/value strings, as in a safetensors header's __metadata__ and
// an index's "metadata" (checkpoint.h, writer.h).
// Thread-compatible value type.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace shardload {

using Metadata = std::vector<std::pair<std::string, std::string>>;

}  // namespace shardload
