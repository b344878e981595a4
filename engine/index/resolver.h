// The index resolver: turns the PATH given to Checkpoint::Open into a
// validated Checkpoint. Locate() decides what PATH names; Resolve() reads the
// index (if any) and every shard's header once, then cross-checks them.
// Thread-safe: pure functions over the file system (no shared state).
//
// PATH, in order of the checks (see locate.cpp):
//   * does not exist / cannot be stat()ed -> kIoError from ErrnoError naming
//     PATH, sys_errno = errno (ENOENT for a missing path: there is no
//     separate "not found" code and the I/O family is what the CLI maps);
//   * a directory: exactly one *.safetensors.index.json -> that index;
//     several -> kAmbiguousIndex listing them; none -> every *.safetensors
//     in it (sorted by name, not recursive); none of either -> kNoCheckpoint;
//   * a regular file named *.safetensors.index.json -> that index; any
//     other regular file -> that one safetensors file, whatever its name
//     (model.st, a Hugging Face blob named by its hash);
//   * anything else (device, FIFO, socket) -> kNotRegularFile.
// Symlinks are followed everywhere; paths are never canonicalized, so shard
// names resolve against the directory of the index path as given (in a
// Hugging Face cache, the snapshot directory, not the blob store).
#pragma once

#include <string>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload::index {

// At most this many kUnindexedTensor warnings name a tensor; one more
// warning then counts the rest.
inline constexpr std::size_t kMaxUnindexedWarnings = 64;

struct ShardFile {
  std::string name;  // as written in weight_map, or the file name
  std::string path;  // name joined to the index's (or PATH's) directory
};

struct Source {
  std::string index_path;        // empty: no index, load `files`
  std::vector<ShardFile> files;  // without an index: sorted by name
};

// What PATH names (rules above). Reads directory entries only.
Result<Source> Locate(const std::string& path);

// Locate + read + cross-check: the whole of Checkpoint::Open.
Result<Checkpoint> Resolve(const std::string& path);

// `dir` + "/" + `name`; just `name` when `dir` is empty.
std::string JoinPath(const std::string& dir, const std::string& name);
// Everything before the last '/': "" for "x", "/" for "/x".
std::string DirName(const std::string& path);

}  // namespace shardload::index
