// Locate(): what the path given to Checkpoint::Open names (a file, an index,
// a directory), by stat() and one directory listing. Rules in resolver.h.
// Thread-safe: no shared state.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "index/index_json.h"
#include "index/resolver.h"
#include "util/errno_error.h"

namespace shardload::index {
namespace {

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

struct Listing {
  std::vector<std::string> indexes;  // *.safetensors.index.json
  std::vector<std::string> shards;   // *.safetensors
};

Result<Listing> ListDirectory(const std::string& dir) {
  DirHandle handle(::opendir(dir.c_str()));
  if (!handle) return ErrnoError(dir, "opendir", errno);
  Listing out;
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(handle.get());
    if (entry == nullptr) {
      if (errno != 0) return ErrnoError(dir, "readdir", errno);
      break;
    }
    std::string_view name = entry->d_name;
    if (name.ends_with(kIndexSuffix)) out.indexes.emplace_back(name);
    if (name.ends_with(kShardSuffix)) out.shards.emplace_back(name);
  }
  std::sort(out.indexes.begin(), out.indexes.end());
  std::sort(out.shards.begin(), out.shards.end());
  return out;
}

Result<Source> LocateInDirectory(const std::string& dir) {
  Result<Listing> listing = ListDirectory(dir);
  if (!listing) return std::move(listing).error();
  Source out;
  if (listing->indexes.size() > 1) {
    return MakeError(ErrorCode::kAmbiguousIndex, dir, {},
                     fmt::format("the directory holds {} index files ({}); pass "
                                 "the path of the one to load",
                                 listing->indexes.size(), fmt::join(listing->indexes, ", ")));
  }
  if (listing->indexes.size() == 1) {
    out.index_path = JoinPath(dir, listing->indexes[0]);
    return out;
  }
  if (listing->shards.empty()) {
    return MakeError(ErrorCode::kNoCheckpoint, dir, {},
                     "the directory holds no *.safetensors.index.json and no "
                     ".safetensors file");
  }
  for (std::string& name : listing->shards) {
    std::string path = JoinPath(dir, name);
    out.files.push_back({std::move(name), std::move(path)});
  }
  return out;
}

// A regular file: an index when its name says so, else a safetensors file
// whatever its name (model.st, a Hugging Face blob named by its hash).
Source LocateFile(const std::string& path) {
  Source out;
  if (path.ends_with(kIndexSuffix)) {
    out.index_path = path;
    return out;
  }
  std::size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  out.files.push_back({std::move(name), path});
  return out;
}

}  // namespace

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string DirName(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {};
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<Source> Locate(const std::string& path) {
  if (path.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, path, {}, "empty checkpoint path");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoError(path, "stat", errno);
  if (S_ISDIR(st.st_mode)) return LocateInDirectory(path);
  if (S_ISREG(st.st_mode)) return LocateFile(path);
  return MakeError(ErrorCode::kNotRegularFile, path, {},
                   "neither a regular file nor a directory (after following "
                   "symlinks)");
}

}  // namespace shardload::index
