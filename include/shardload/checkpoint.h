// The checkpoint description: every shard and every tensor of a safetensors
// checkpoint (one file, a sharded index, a directory or a Hugging Face cache
// snapshot), validated as strictly as the reference reader. Only headers are
// read; no tensor data. A Checkpoint is the files it was opened from: it
// keeps each shard's descriptor, and loads read through it, so a shard
// renamed over after Open is still read from the file described here, and
// one changed in place is refused (shard_changed, docs/errors.md).
// Thread-safe once built: a Checkpoint is immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shardload/dtype.h"
#include "shardload/error.h"
#include "shardload/metadata.h"

namespace shardload {

namespace internal {
struct CheckpointAccess;
class ShardFile;  // a shard's kept descriptor and identity (engine/index/shard_file.h)
}  // namespace internal


struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;  // empty for a scalar
  std::uint32_t shard = 0;           // index into Checkpoint::shards()
  std::uint64_t offset = 0;          // absolute file offset of the first byte
  std::uint64_t size = 0;            // bytes; offset + size <= shard file size

  std::uint64_t NumElements() const;  // product of shape (1 for a scalar)
};

struct ShardInfo {
  std::string name;         // as written in weight_map, or the file name
  std::string path;         // path opened (relative names joined to the index dir)
  std::uint64_t file_size = 0;
  std::uint64_t header_size = 0;   // N, the JSON length
  std::uint64_t data_offset = 0;   // 8 + N
  std::optional<Metadata> metadata;  // nullopt: absent or null
  std::uint32_t num_tensors = 0;   // tensors of this shard that are loaded
};

// A non-fatal finding, e.g. a tensor present in a shard but not indexed.
using Warning = Error;

class Checkpoint {
 public:
  // Resolves PATH: a *.safetensors.index.json, any other regular file (read
  // as one safetensors file whatever its name, e.g. a Hugging Face blob), or
  // a directory holding one *.safetensors.index.json or *.safetensors files.
  static Result<Checkpoint> Open(const std::string& path);
  // Byte ranges of shard SHARD of this checkpoint as a checkpoint of its own:
  // range i, [offsets[i], offsets[i] + lengths[i]), is U8 tensor "i" (for
  // reading arbitrary parts of a file, e.g. a slice's rows, with a Loader).
  // Errors: kInvalidArgument for a shard that does not exist, a range past
  // the end of the shard's file, or OFFSETS and LENGTHS of different sizes.
  Result<Checkpoint> ByteRanges(std::uint32_t shard, std::span<const std::uint64_t> offsets,
                                std::span<const std::uint64_t> lengths) const;

  const std::string& path() const { return path_; }
  // The index file used; empty for a single file or an index-less directory.
  const std::string& index_path() const { return index_path_; }
  const std::vector<ShardInfo>& shards() const { return shards_; }
  // Sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<Warning>& warnings() const { return warnings_; }
  // The index's "metadata" object: strings as they are, other JSON values as
  // compact JSON text. Empty without an index.
  const Metadata& index_metadata() const { return index_metadata_; }

  // nullptr when absent. O(log n).
  const TensorInfo* Find(std::string_view name) const;
  std::uint64_t TotalBytes() const;  // sum of tensor sizes

 private:
  // Built only by Open (the resolver, through the engine's
  // index/checkpoint_access.h), so that every Checkpoint was validated.
  friend struct internal::CheckpointAccess;
  Checkpoint(std::string path, std::string index_path,
             std::vector<ShardInfo> shards, std::vector<TensorInfo> tensors,
             std::vector<Warning> warnings, Metadata index_metadata,
             std::vector<std::shared_ptr<const internal::ShardFile>> files);

  std::string path_;
  std::string index_path_;
  std::vector<ShardInfo> shards_;
  std::vector<TensorInfo> tensors_;
  std::vector<Warning> warnings_;
  Metadata index_metadata_;
  // Per shard: the descriptor its header was read through, kept so that
  // every load reads the files this checkpoint describes, whatever their
  // paths name later (shared by copies). Empty for a checkpoint assembled by
  // tests from parts.
  std::vector<std::shared_ptr<const internal::ShardFile>> files_;
};

}  // namespace shardload
