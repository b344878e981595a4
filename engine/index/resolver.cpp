// Resolve(): reads the index (if any) and each shard's header once, checks
// the index against the shards both ways, and assembles the Checkpoint.
// Cost: one stat, one open and the header reads per shard; hash lookups per
// tensor; no per-tensor system call. Each shard's descriptor is kept by the
// Checkpoint (index/shard_file.h). Thread-safe: no shared state.
//
// Order of checks (the first failure is returned):
//   1. Locate PATH; parse the index and check every shard name (index_json).
//   2. stat every shard, in name order: not a regular file -> kNotRegularFile;
//      missing -> kShardMissing for the first missing shard, counting the rest.
//   3. per shard, in name order: read and validate the header (its error is
//      returned as is: it names the shard); then every weight_map tensor of
//      that shard must be in it (kTensorNotInShard). Tensors of the shard that
//      the index does not map to it are warnings (kUnindexedTensor), not
//      loaded.
//   4. without an index, a tensor name in two files -> kDuplicateTensor.
//   5. metadata.total_size != bytes of the loaded tensors -> warning
//      kTotalSizeMismatch (advisory: some writers count headers or elements).
#include "index/resolver.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "format/header.h"
#include "index/checkpoint_access.h"
#include "index/index_json.h"
#include "index/shard_file.h"
#include "util/errno_error.h"
#include "util/fd.h"

namespace shardload::index {
namespace {

// A shard's description plus its header tensors, not yet assigned.
struct LoadedShard {
  ShardInfo info;
  std::vector<format::HeaderTensor> tensors;
  std::shared_ptr<const internal::ShardFile> file;
};

// Who refers to each shard, so that errors about it name the index and a
// tensor mapped to it.
struct ShardContext {
  const std::string& index_path;  // empty without an index
  const ParsedIndex* index;       // nullptr without an index
  const std::vector<ShardFile>& files;

  ShardTensors Tensors(std::uint32_t shard) const {
    return index ? TensorsOfShard(*index, shard) : ShardTensors{};
  }
  std::string ListedIn(std::uint32_t shard) const;
};

std::string ShardContext::ListedIn(std::uint32_t shard) const {
  if (index == nullptr) return {};
  return fmt::format("; the index {} maps {} tensor(s) to shard \"{}\"", index_path,
                     Tensors(shard).count, files[shard].name);
}

std::string_view FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

Error NotRegularError(const ShardContext& ctx, std::uint32_t shard, mode_t mode) {
  return MakeError(ErrorCode::kNotRegularFile, ctx.files[shard].path, ctx.Tensors(shard).first,
                   fmt::format("shard is {} (after following symlinks), not a "
                               "regular file{}",
                               FileKind(mode), ctx.ListedIn(shard)));
}

Error MissingError(const ShardContext& ctx, const std::vector<std::uint32_t>& missing) {
  std::uint32_t shard = missing.front();
  const ShardFile& file = ctx.files[shard];
  struct stat lst {};
  bool dangling = ::lstat(file.path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
  std::string detail = fmt::format("shard file does not exist{}{}",
                                   dangling ? " (dangling symlink)" : "", ctx.ListedIn(shard));
  if (missing.size() > 1) {
    std::vector<std::string_view> others;
    for (std::size_t i = 1; i < missing.size() && i <= 5; ++i) {
      others.push_back(ctx.files[missing[i]].name);
    }
    detail += fmt::format("; {} more shard(s) missing: {}{}", missing.size() - 1,
                          fmt::join(others, ", "), missing.size() > 6 ? ", ..." : "");
  }
  return MakeError(ErrorCode::kShardMissing, file.path, ctx.Tensors(shard).first,
                   std::move(detail));
}

// Step 2: one stat per shard, so that an incomplete download is reported
// before any header is read.
Status CheckShardFiles(const ShardContext& ctx) {
  std::vector<std::uint32_t> missing;
  for (std::uint32_t i = 0; i < ctx.files.size(); ++i) {
    struct stat st {};
    if (::stat(ctx.files[i].path.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode) && missing.empty()) return NotRegularError(ctx, i, st.st_mode);
      continue;
    }
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      missing.push_back(i);
    } else if (missing.empty()) {
      return ErrnoError(ctx.files[i].path, "stat", err, ctx.Tensors(i).first);
    }
  }
  if (!missing.empty()) return MissingError(ctx, missing);
  return {};
}

// The descriptor the header was read through, kept (blocking from now on)
// when within the budget (index/shard_file.h), with the file's identity.
Result<std::shared_ptr<const internal::ShardFile>> KeepFile(const std::string& path,
                                                            FileDescriptor fd,
                                                            const struct stat& st) {
  if (!internal::WithinKeepBudget(fd.get())) {
    fd.Reset();
  } else if (int flags = ::fcntl(fd.get(), F_GETFL);
             flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoError(path, "fcntl", errno);
  }
  return std::make_shared<const internal::ShardFile>(path, std::move(fd), internal::IdentityOf(st));
}

// Opens the shard (following symlinks) and reads its header: the header's
// error is returned as is. Keeps the descriptor (KeepFile).
Result<LoadedShard> ReadShard(const ShardContext& ctx, std::uint32_t shard) {
  const ShardFile& file = ctx.files[shard];
  // O_NONBLOCK: a FIFO swapped in since the stat must not block the open.
  FileDescriptor fd(::open(file.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return ErrnoError(file.path, "open", errno, ctx.Tensors(shard).first);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(file.path, "fstat", errno);
  if (!S_ISREG(st.st_mode)) return NotRegularError(ctx, shard, st.st_mode);
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  Result<format::Header> header = format::ReadHeader(fd.get(), file_size, file.path);
  if (!header) return std::move(header).error();
  LoadedShard out;
  out.info.name = file.name;
  out.info.path = file.path;
  out.info.file_size = file_size;
  out.info.header_size = header->header_size;
  out.info.data_offset = 8 + header->header_size;
  out.info.metadata = std::move(header->metadata);
  out.tensors = std::move(header->tensors);
  auto kept = KeepFile(file.path, std::move(fd), st);
  if (!kept) return std::move(kept).error();
  out.file = std::move(*kept);
  return out;
}

TensorInfo MakeTensor(format::HeaderTensor&& t, std::uint32_t shard, std::uint64_t data_offset) {
  TensorInfo out;
  out.name = std::move(t.name);
  out.dtype = t.dtype;
  out.shape = std::move(t.shape);
  out.shard = shard;
  out.offset = data_offset + t.begin;  // <= file size: the header checked it
  out.size = t.end - t.begin;
  return out;
}

// Builds the checkpoint of an index, one shard at a time.
class IndexAssembler {
 public:
  IndexAssembler(const ShardContext& ctx, const ParsedIndex& index);
  Status AddShard(std::uint32_t shard, LoadedShard loaded);
  Checkpoint Finish(const std::string& path, const ParsedIndex& index);

 private:
  void WarnUnindexed(const ShardInfo& shard, const std::string& tensor,
                     const std::uint32_t* mapped_to);
  Error NotInShardError(std::uint32_t shard) const;

  const ShardContext& ctx_;
  const ParsedIndex& index_;
  std::unordered_map<std::string_view, std::uint32_t> entry_of_;  // tensor -> entry
  std::vector<std::uint32_t> expected_;                           // per shard: entries mapped to it
  std::vector<std::uint8_t> found_;                               // per entry
  std::vector<ShardInfo> shards_;
  std::vector<std::shared_ptr<const internal::ShardFile>> files_;
  std::vector<TensorInfo> tensors_;
  std::vector<Warning> warnings_;
  std::size_t unindexed_ = 0;
};

IndexAssembler::IndexAssembler(const ShardContext& ctx, const ParsedIndex& index)
    : ctx_(ctx),
      index_(index),
      expected_(index.shard_names.size(), 0),
      found_(index.entries.size(), 0) {
  entry_of_.reserve(index.entries.size());
  for (std::uint32_t i = 0; i < index.entries.size(); ++i) {
    entry_of_.emplace(index.entries[i].tensor, i);
    ++expected_[index.entries[i].shard];
  }
  tensors_.reserve(index.entries.size());
  shards_.reserve(index.shard_names.size());
}

void IndexAssembler::WarnUnindexed(const ShardInfo& shard, const std::string& tensor,
                                   const std::uint32_t* mapped_to) {
  if (++unindexed_ > kMaxUnindexedWarnings) return;
  std::string where = mapped_to ? fmt::format("the index {} maps it to shard \"{}\"",
                                              ctx_.index_path, index_.shard_names[*mapped_to])
                                : fmt::format("the index {} does not list it", ctx_.index_path);
  warnings_.push_back(MakeError(ErrorCode::kUnindexedTensor, shard.path, tensor,
                                fmt::format("tensor is in shard \"{}\" but {}; not "
                                            "loaded from this shard",
                                            shard.name, where)));
}

Error IndexAssembler::NotInShardError(std::uint32_t shard) const {
  const std::string* first = nullptr;
  std::size_t absent = 0;
  for (std::uint32_t i = 0; i < index_.entries.size(); ++i) {
    const IndexEntry& e = index_.entries[i];
    if (e.shard != shard || found_[i]) continue;
    ++absent;
    if (first == nullptr || e.tensor < *first) first = &e.tensor;
  }
  return MakeError(ErrorCode::kTensorNotInShard, ctx_.files[shard].path,
                   first ? *first : std::string(),
                   fmt::format("the index {} maps this tensor to shard \"{}\", "
                               "whose header lacks it ({} of the {} tensor(s) "
                               "mapped to this shard are absent)",
                               ctx_.index_path, ctx_.files[shard].name, absent, expected_[shard]));
}

Status IndexAssembler::AddShard(std::uint32_t shard, LoadedShard loaded) {
  std::uint32_t loaded_count = 0;
  for (format::HeaderTensor& t : loaded.tensors) {
    auto it = entry_of_.find(t.name);
    if (it == entry_of_.end() || index_.entries[it->second].shard != shard) {
      WarnUnindexed(loaded.info, t.name,
                    it == entry_of_.end() ? nullptr : &index_.entries[it->second].shard);
      continue;
    }
    found_[it->second] = 1;
    ++loaded_count;
    tensors_.push_back(MakeTensor(std::move(t), shard, loaded.info.data_offset));
  }
  if (loaded_count != expected_[shard]) return NotInShardError(shard);
  loaded.info.num_tensors = loaded_count;
  shards_.push_back(std::move(loaded.info));
  files_.push_back(std::move(loaded.file));
  return {};
}

Checkpoint IndexAssembler::Finish(const std::string& path, const ParsedIndex& index) {
  if (unindexed_ > kMaxUnindexedWarnings) {
    warnings_.push_back(
        MakeError(ErrorCode::kUnindexedTensor, ctx_.index_path, {},
                  fmt::format("{} more tensor(s) in shards but not indexed there; not loaded",
                              unindexed_ - kMaxUnindexedWarnings)));
  }
  std::uint64_t bytes = 0;
  for (const TensorInfo& t : tensors_) bytes += t.size;
  if (index.total_size && *index.total_size != bytes) {
    warnings_.push_back(
        MakeError(ErrorCode::kTotalSizeMismatch, ctx_.index_path, {},
                  fmt::format("metadata.total_size is {} but the indexed tensors hold {} "
                              "bytes (advisory only)",
                              *index.total_size, bytes)));
  }
  return internal::CheckpointAccess::Make(path, ctx_.index_path, std::move(shards_),
                                         std::move(tensors_), std::move(warnings_),
                                         index.metadata, std::move(files_));
}

Result<Checkpoint> ResolveIndex(const std::string& path, const std::string& index_path) {
  Result<ParsedIndex> index = ReadIndexFile(index_path);
  if (!index) return std::move(index).error();
  std::string dir = DirName(index_path);
  std::vector<ShardFile> files;
  files.reserve(index->shard_names.size());
  for (const std::string& name : index->shard_names) {
    files.push_back({name, JoinPath(dir, name)});
  }
  ShardContext ctx{index_path, &*index, files};
  if (Status s = CheckShardFiles(ctx); !s) return std::move(s).error();
  IndexAssembler assembler(ctx, *index);
  for (std::uint32_t i = 0; i < files.size(); ++i) {
    Result<LoadedShard> shard = ReadShard(ctx, i);
    if (!shard) return std::move(shard).error();
    if (Status s = assembler.AddShard(i, std::move(*shard)); !s) {
      return std::move(s).error();
    }
  }
  return assembler.Finish(path, *index);
}

// Step 4: tensors sorted by (name, shard); equal neighbours are duplicates.
Status CheckNoDuplicates(std::vector<TensorInfo>& tensors, const std::vector<ShardInfo>& shards) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.name != b.name ? a.name < b.name : a.shard < b.shard;
  });
  for (std::size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].name != tensors[i - 1].name) continue;
    return MakeError(ErrorCode::kDuplicateTensor, shards[tensors[i].shard].path, tensors[i].name,
                     fmt::format("tensor is also in {}; without an index each "
                                 "tensor must be in exactly one file",
                                 shards[tensors[i - 1].shard].path));
  }
  return {};
}

Result<Checkpoint> ResolveFiles(const std::string& path, const std::vector<ShardFile>& files) {
  const std::string no_index;
  ShardContext ctx{no_index, nullptr, files};
  if (Status s = CheckShardFiles(ctx); !s) return std::move(s).error();
  std::vector<ShardInfo> shards;
  std::vector<std::shared_ptr<const internal::ShardFile>> kept;
  std::vector<TensorInfo> tensors;
  for (std::uint32_t i = 0; i < files.size(); ++i) {
    Result<LoadedShard> shard = ReadShard(ctx, i);
    if (!shard) return std::move(shard).error();
    shard->info.num_tensors = static_cast<std::uint32_t>(shard->tensors.size());
    for (format::HeaderTensor& t : shard->tensors) {
      tensors.push_back(MakeTensor(std::move(t), i, shard->info.data_offset));
    }
    shards.push_back(std::move(shard->info));
    kept.push_back(std::move(shard->file));
  }
  if (Status s = CheckNoDuplicates(tensors, shards); !s) return std::move(s).error();
  return internal::CheckpointAccess::Make(path, {}, std::move(shards), std::move(tensors), {},
                                         {}, std::move(kept));
}

}  // namespace

Result<Checkpoint> Resolve(const std::string& path) {
  Result<Source> source = Locate(path);
  if (!source) return std::move(source).error();
  if (source->index_path.empty()) return ResolveFiles(path, source->files);
  return ResolveIndex(path, source->index_path);
}

}  // namespace shardload::index
