// Quantized checkpoints in tensor-parallel plans: the quantization formats
// the splitter knows, read from a Hugging Face `quantization_config` object
// (config.json, or the same key in our plan JSON), and what each tensor name
// is under a format: a weight, or a companion (scales, zero points, packed
// elements) that follows a weight's split, and how each of its dimensions
// maps onto the weight's logical [..., out, in] dimensions.
// Pure computation. Thread-safe: pure functions over immutable values.
//
//   format      tensor                      dims (leading expert dims pass through)
//   ----------  --------------------------  -----------------------------------------
//   fp8_block   X.weight        F8 [N, K]   out, in (the weight, not a companion)
//               X.weight_scale_inv [ceil(N/bn), ceil(K/bk)]   out/bn^, in/bk^
//   fp8         X.weight_scale  [] or [1]   replicated;  [N, 1] or [N]: out
//               X.input_scale               replicated
//   gptq        X.qweight  I32 [K/p, N]     in/p (packed), out
//               X.qzeros   I32 [K/g, N/p]   in/g (group), out/p (packed)
//               X.scales       [K/g, N]     in/g (group), out
//               X.g_idx        [K]          in
//   awq         X.qweight  I32 [K, N/p]     in, out/p (packed)
//               X.qzeros   I32 [K/g, N/p]   in/g (group), out/p (packed)
//               X.scales       [K/g, N]     in/g (group), out
//   mxfp4       X_blocks   U8 [R, K/32, 16] out, in/32 (packed), 16 bytes
//               X_scales   U8 [R, K/32]     out, in/32 (packed)
// p = 32 / bits; `^` = ceil: a block may straddle two ranks' ranges and goes
// to both. Packed elements and groups must not be cut. GPTQ with desc_act, or
// a group_size of -1, keeps qzeros/scales whole along `in` (g_idx says which
// group each input row uses).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"
#include "tp/json_util.h"

namespace shardload::tp {

enum class QuantFormat : std::uint8_t { kNone, kFp8Block, kFp8, kGptq, kAwq, kMxfp4 };

std::string_view QuantFormatName(QuantFormat format);

struct Quant {
  QuantFormat format = QuantFormat::kNone;
  std::uint64_t block_rows = 0;   // fp8_block: weight_block_size [bn, bk]
  std::uint64_t block_cols = 0;
  std::uint64_t bits = 4;         // gptq, awq: 2, 4 or 8
  std::uint64_t group_size = 0;   // gptq, awq; 0: one group (HF's -1)
  bool desc_act = false;          // gptq

  std::uint64_t pack() const { return 32 / bits; }  // elements per I32
};

// How one dimension of a quantized tensor maps onto the weight's logical
// dimensions.
enum class AxisKind : std::uint8_t {
  kSame,    // one logical index per element (per == 1)
  kBlock,   // `per` logical indices per element; a block may be shared (ceil)
  kGroup,   // `per` indices per element; a split must not cut a group
  kPacked,  // `per` indices packed in one element; a split must not cut one
  kOwn,     // a dimension of its own (MXFP4's 16 bytes); never split
};

struct QuantAxis {
  int logical = 0;           // -2: out, -1: in; 0 with kOwn
  AxisKind kind = AxisKind::kSame;
  std::uint64_t per = 1;     // logical indices per element
  std::uint64_t size = 0;    // kOwn: the dimension's size
};

// What a tensor name is under a format.
struct QuantRole {
  std::string weight;       // the tensor holding the weight (may be itself)
  std::string match_name;   // the name plan rules are matched against
  std::string_view what;    // e.g. "FP8 block scale", for messages
  bool is_weight = false;   // the weight itself (GPTQ/AWQ qweight, MXFP4 blocks)
  bool whole = false;       // replicated whatever the split (scalars)
  // The trailing dimensions of the tensor; the ones before them are the
  // weight's leading (expert) dimensions, one to one.
  std::vector<QuantAxis> axes;
};

// Parses a `quantization_config` object. STRICT (our plan JSON): every key
// must be known. Otherwise (a Hugging Face config.json) keys the splitter
// does not need are ignored. PATH only names the file in errors.
// Errors: kTpPlanJson (bad values), kTpQuantUnsupported (a quant_method or
// variant the splitter does not cover).
Result<Quant> ParseQuantConfig(const JsonValue& config, const std::string& path,
                               bool strict);

// The role of NAME (a tensor of shape SHAPE) under Q; nullopt: not quantized
// (an ordinary tensor, e.g. a bias, a norm, or an FP8 `.weight`).
std::optional<QuantRole> Classify(const Quant& q, std::string_view name,
                                  const std::vector<std::uint64_t>& shape);

// The weight's logical shape [..., out, in] from the tensor WEIGHT names
// (role.weight). Errors: kTpShapeMismatch when WEIGHT does not have the
// format's shape (naming WEIGHT).
Result<std::vector<std::uint64_t>> LogicalShape(const Quant& q, const TensorInfo& weight,
                                                const std::string& path);

}  // namespace shardload::tp
