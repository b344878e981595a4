// Manifest names of checkpoint files.
// Thread-safe: pure functions.
#include "integrity/paths.h"

#include <filesystem>

namespace shardload {

std::string ShardKey(const ShardInfo& shard) {
  std::string name = shard.name;
  while (name.size() > 2 && name.compare(0, 2, "./") == 0) name.erase(0, 2);
  return name;
}

std::string CheckpointDir(const Checkpoint& checkpoint) {
  if (!checkpoint.shards().empty()) {
    const ShardInfo& s = checkpoint.shards().front();
    std::string key = ShardKey(s);
    if (s.path.size() > key.size() + 1 &&
        s.path.compare(s.path.size() - key.size(), key.size(), key) == 0 &&
        s.path[s.path.size() - key.size() - 1] == '/') {
      return s.path.substr(0, s.path.size() - key.size() - 1);
    }
    std::string parent = std::filesystem::path(s.path).parent_path().string();
    return parent.empty() ? "." : parent;
  }
  return checkpoint.path();
}

bool SafeRelativeName(std::string_view name) {
  if (name.empty() || name.front() == '/') return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(start, end - start);
    if (part.empty() || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace shardload
