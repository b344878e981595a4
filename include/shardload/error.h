// Error values returned by every shardload API: a code, the file, the tensor
// and what rule was broken. No exceptions cross the public API.
// Thread-compatible value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace shardload {

// One code per distinct refusal. Codes are stable: scripts read them through
// `shardload ... --json` and the CLI maps each family to an exit code
// (docs/errors.md). Append new codes; never renumber.
enum class ErrorCode : int {
  kOk = 0,

  // Safetensors header, in the reference reader's order of checks.
  kHeaderTooSmall = 100,    // file shorter than the 8-byte length prefix
  kHeaderTooLarge,          // N > 100,000,000
  kInvalidHeaderLength,     // 8 + N past the end of the file
  kInvalidUtf8,             // header bytes (or a decoded string) not UTF-8
  kJsonSyntax,              // not well-formed JSON, trailing characters, N == 0
  kJsonTooDeep,             // containers nested deeper than 127
  kHeaderNotObject,         // top-level value is not an object
  kBadMetadata,             // __metadata__ not an object of strings, or null
  kDuplicateKey,            // any key given twice (stricter than the reference)
  kTensorNotObject,         // a tensor entry is not an object
  kMissingField,            // dtype, shape or data_offsets absent
  kBadFieldType,            // dtype not a string, shape/data_offsets not arrays
  kUnknownDtype,            // dtype string is not one of the 22 names
  kBadInteger,              // not a plain non-negative integer below 2^64
  kBadDataOffsets,          // data_offsets does not have exactly two entries
  kInvalidOffset,           // offsets not contiguous from 0, or end < begin
  kValidationOverflow,      // element or bit count overflows 64 bits
  kMisalignedSlice,         // sub-byte dtype with a bit count not divisible by 8
  kTensorInvalidInfo,       // end - begin != bytes implied by dtype and shape
  kIncompleteBuffer,        // 8 + N + last end != file size

  // Checkpoint layout: index files, directories, shards.
  kNoCheckpoint = 200,      // path holds no index and no .safetensors file
  kAmbiguousIndex,          // a directory holds several *.safetensors.index.json
  kIndexJson,               // index is not valid JSON of the expected shape
  kBadShardName,            // weight_map value absolute, with "..", or empty
  kShardMissing,            // a shard named by the index does not exist
  kNotRegularFile,          // a shard (after symlinks) is not a regular file
  kTensorNotInShard,        // weight_map names a tensor its shard lacks
  kDuplicateTensor,         // the same tensor name in two shards
  kUnindexedTensor,         // warning: tensor in a shard but not in weight_map
  kTotalSizeMismatch,       // warning: metadata.total_size != tensor bytes
  kShardChanged,            // a shard changed or was replaced since it was opened

  // Requests and I/O.
  kInvalidArgument = 300,   // a caller's request makes no sense
  kTensorNotFound,          // a requested tensor is not in the checkpoint
  kIoError,                 // a system call failed (errno attached)
  kTruncated,               // a shard ended before the planned end of a read
  kUnsupported,             // not possible on this system
  kResourceExhausted,       // out of memory or similar
  kCancelled,               // stopped because another part of the job failed
  kInternal,                // a bug in shardload
  kPeerFailed,              // a cooperating process failed, died or timed out
  kPeerMismatch,            // cooperating processes disagree on the job

  // Tensor-parallel plans.
  kTpPlanJson = 400,        // a plan or config.json is not JSON of the expected shape
  kTpBadPattern,            // a rule's match pattern is malformed (glob or regex)
  kTpBadRule,               // unknown split style or option, or a bad option value
  kTpShapeMismatch,         // a rule does not fit a tensor (dim, blocks sum, expert)
  kTpIndivisible,           // unit, blocks, exact, replicate_when_fewer, vocab, experts
  kTpMisaligned,            // a split of a sub-byte dtype not on whole bytes
  kTpUnmatched,             // "unmatched": "error" and no rule matches a tensor
  kTpQuantUnsupported,      // a quantization format the splitter does not cover

  // Integrity (verify, LoadOptions::verify).
  kChecksumMismatch = 500,  // a file's SHA-256 differs from its manifest entry
  kBadManifest,             // a manifest is malformed, or lacks a file it must list
};

// Stable lower-case name of a code, e.g. "invalid_offset".
std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string path;    // the file the error is about (empty when none)
  std::string tensor;  // the tensor it is about (empty when none)
  std::string detail;  // the rule broken, in words
  int sys_errno = 0;   // errno for kIoError, else 0
  // The byte offset in `path` where the failing read started or the file
  // ended, when the error is about one (I/O errors of reads, truncation).
  std::optional<std::uint64_t> offset;

  // "PATH: tensor `NAME`: DETAIL (error: CODE_NAME)".
  std::string ToString() const;
};

Error MakeError(ErrorCode code, std::string path, std::string tensor,
                std::string detail);

// Success or one Error. [[nodiscard]]: an ignored Status is a bug.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  // REQUIRES: !ok().
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }

 private:
  std::optional<Error> error_;
};

// A value or an Error, shaped like C++23 std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  // REQUIRES: has_value().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // REQUIRES: !has_value().
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }
  Status status() const { return has_value() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace shardload
