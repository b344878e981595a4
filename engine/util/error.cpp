// Error code names and the one formatting of an Error for people.
#include <string>

#include "shardload/error.h"
#include "util/clip_name.h"

namespace shardload {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kHeaderTooSmall: return "header_too_small";
    case ErrorCode::kHeaderTooLarge: return "header_too_large";
    case ErrorCode::kInvalidHeaderLength: return "invalid_header_length";
    case ErrorCode::kInvalidUtf8: return "invalid_utf8";
    case ErrorCode::kJsonSyntax: return "json_syntax";
    case ErrorCode::kJsonTooDeep: return "json_too_deep";
    case ErrorCode::kHeaderNotObject: return "header_not_object";
    case ErrorCode::kBadMetadata: return "bad_metadata";
    case ErrorCode::kDuplicateKey: return "duplicate_key";
    case ErrorCode::kTensorNotObject: return "tensor_not_object";
    case ErrorCode::kMissingField: return "missing_field";
    case ErrorCode::kBadFieldType: return "bad_field_type";
    case ErrorCode::kUnknownDtype: return "unknown_dtype";
    case ErrorCode::kBadInteger: return "bad_integer";
    case ErrorCode::kBadDataOffsets: return "bad_data_offsets";
    case ErrorCode::kInvalidOffset: return "invalid_offset";
    case ErrorCode::kValidationOverflow: return "validation_overflow";
    case ErrorCode::kMisalignedSlice: return "misaligned_slice";
    case ErrorCode::kTensorInvalidInfo: return "tensor_invalid_info";
    case ErrorCode::kIncompleteBuffer: return "incomplete_buffer";
    case ErrorCode::kNoCheckpoint: return "no_checkpoint";
    case ErrorCode::kAmbiguousIndex: return "ambiguous_index";
    case ErrorCode::kIndexJson: return "index_json";
    case ErrorCode::kBadShardName: return "bad_shard_name";
    case ErrorCode::kShardMissing: return "shard_missing";
    case ErrorCode::kNotRegularFile: return "not_regular_file";
    case ErrorCode::kTensorNotInShard: return "tensor_not_in_shard";
    case ErrorCode::kDuplicateTensor: return "duplicate_tensor";
    case ErrorCode::kUnindexedTensor: return "unindexed_tensor";
    case ErrorCode::kTotalSizeMismatch: return "total_size_mismatch";
    case ErrorCode::kShardChanged: return "shard_changed";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kTensorNotFound: return "tensor_not_found";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kTruncated: return "truncated";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kPeerFailed: return "peer_failed";
    case ErrorCode::kPeerMismatch: return "peer_mismatch";
    case ErrorCode::kTpPlanJson: return "tp_plan_json";
    case ErrorCode::kTpBadPattern: return "tp_bad_pattern";
    case ErrorCode::kTpBadRule: return "tp_bad_rule";
    case ErrorCode::kTpShapeMismatch: return "tp_shape_mismatch";
    case ErrorCode::kTpIndivisible: return "tp_indivisible";
    case ErrorCode::kTpMisaligned: return "tp_misaligned";
    case ErrorCode::kTpUnmatched: return "tp_unmatched";
    case ErrorCode::kTpQuantUnsupported: return "tp_quant_unsupported";
    case ErrorCode::kChecksumMismatch: return "checksum_mismatch";
    case ErrorCode::kBadManifest: return "bad_manifest";
  }
  return "unknown";
}

Error MakeError(ErrorCode code, std::string path, std::string tensor,
                std::string detail) {
  if (tensor.size() > kMaxQuotedName) tensor = ClipName(tensor);
  return Error{code, std::move(path), std::move(tensor), std::move(detail), 0, std::nullopt};
}

std::string Error::ToString() const {
  std::string out;
  if (!path.empty()) out += path + ": ";
  if (!tensor.empty()) out += "tensor `" + ClipName(tensor) + "`: ";
  out += detail;
  out += " (error: ";
  out += ErrorCodeName(code);
  out += ")";
  return out;
}

}  // namespace shardload
