// Tensor-parallel plans: our JSON plan format (tp_plan_version 1) and Hugging
// Face `base_model_tp_plan` / `base_model_ep_plan` read from a config.json,
// both parsed into the same ordered list of Rules. Parsing refuses every
// tensor-independent mistake (syntax, unknown styles and options, bad
// patterns, option types); splitter.h refuses the tensor-dependent ones.
// Pure computation: callers read the files.
// Thread-safe after parsing: a Plan is an immutable value.
//
// Our format:
//   {"tp_plan_version": 1, "uneven": "chunk", "unmatched": "replicate",
//    "quantization_config": {"quant_method": ..., ...},   (optional; quant.h)
//    "num_layers": L, "pipeline": {"layer": ..., "first": [...], "last": [...]},
//                                                          (optional; pipeline.h)
//    "rules": [{"match": PATTERN, "split": STYLE, ...options}, ...]}
//
//   style      options (all optional unless marked)
//   ---------  -------------------------------------------------------------
//   replicate  -                      every rank loads the whole tensor
//   skip       -                      no rank loads it
//   col        dim unit blocks        dim -2 of 2+-D tensors, dim 0 of 1-D
//              replicate_when_fewer uneven
//   row        (same as col)          dim -1 of 2+-D tensors; 1-D replicated
//   vocab      pad_to uneven          dim 0, padded to a multiple of pad_to
//   experts    num_experts (required) owners of the `{expert}` index load the
//              placement uneven       whole tensor, the others skip it
//
// Every JSON key of the plan and of each rule must be known; keys must not
// repeat. See splitter.h for the arithmetic of each style.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/error.h"
#include "tp/pattern.h"
#include "tp/pipeline.h"
#include "tp/quant.h"

namespace shardload::tp {

enum class Style : std::uint8_t { kReplicate, kSkip, kCol, kRow, kVocab, kExperts };

// How u units are dealt to W ranks (splitter.h has the formulas).
enum class Uneven : std::uint8_t {
  kChunk,     // torch.chunk / DTensor Shard: ceil(u/W) each, tail short or empty
  kBalanced,  // numpy array_split: the first u mod W ranks get one more
  kExact,     // refuse unless W divides u
};

enum class Unmatched : std::uint8_t { kReplicate, kError };

enum class Placement : std::uint8_t {
  kLinear,      // contiguous expert ranges (dealt by the rule's Uneven)
  kRoundRobin,  // expert e on rank e mod W
};

// Which candidate of a tensor name is tried first.
enum class MatchOrder : std::uint8_t {
  // Ours: for each rule in order, the name, then the name without its last
  // component.
  kRuleFirst,
  // Hugging Face: the name against every rule, then the parent against every
  // rule (a parameter key beats its module's key).
  kNameFirst,
};

std::string_view StyleName(Style style);
std::string_view UnevenName(Uneven uneven);
std::string_view PlacementName(Placement placement);

struct Rule {
  // Names the rule in errors and in LocalSlice::rule, e.g.
  // `rules[2] "model.layers.*.mlp.down_proj" (row)`.
  std::string label;
  Pattern pattern;
  Style style = Style::kReplicate;

  // col / row. Default: nullopt, the style's dimension (see above). When
  // set, it is the split dimension of every non-scalar tensor the rule
  // matches (1-D row tensors included); negative counts from the end.
  std::optional<std::int64_t> dim;
  // Split in whole units of this many indices. Default: 1.
  std::uint64_t unit = 1;
  // `blocks`: block_sizes when given as a list, else block_count equal
  // blocks. Default: one block.
  std::uint64_t block_count = 1;
  std::vector<std::uint64_t> block_sizes;
  // One value for every block, or one per block. Default: {false}.
  std::vector<bool> replicate_when_fewer = {false};

  // col / row / vocab / experts, resolved at parse time. Default: the plan's
  // `uneven` for col and row; kExact for vocab; kBalanced for experts (vLLM's
  // "linear"). A rule's own `uneven` always wins.
  Uneven uneven = Uneven::kChunk;
  // vocab. Default: 1.
  std::uint64_t pad_to = 1;
  // experts. Required (> 0).
  std::uint64_t num_experts = 0;
  // experts. Default: kLinear.
  Placement placement = Placement::kLinear;
};

struct Plan {
  std::string path;  // the plan file or config.json; only names it in errors
  Uneven uneven = Uneven::kChunk;                  // Default: chunk
  Unmatched unmatched = Unmatched::kReplicate;     // Default: replicate
  MatchOrder order = MatchOrder::kRuleFirst;       // ours; kNameFirst for HF
  std::vector<Rule> rules;                         // first match wins
  // Companions (scales, zero points) follow their weight's split; quant.h.
  Quant quant;                                     // Default: none
  // Pipeline stages (pipeline.h): our "pipeline" object, or a Hugging Face
  // config's base_model_pp_plan. Default: nullopt, DefaultPipeline().
  std::optional<PipelineSpec> pipeline;
  // Our "num_layers" (the model's layer count L). Default: nullopt,
  // config.json's num_hidden_layers.
  std::optional<std::uint64_t> num_layers;
};

// The most rules a plan may hold (our "rules", or the entries of a Hugging
// Face plan object): each compiles a pattern, so a plan file under its size
// cap could otherwise take gigabytes (docs/tp-plan.md "Limits").
inline constexpr std::size_t kMaxPlanRules = 4096;

// Parses our JSON plan. PATH only names the file in errors.
// Errors: kTpPlanJson (syntax, duplicate or unknown top-level keys, version),
// kTpBadPattern, kTpBadRule (each naming the rule by index and pattern).
Result<Plan> ParsePlanJson(std::string_view text, const std::string& path);

enum class HfPlanKind : std::uint8_t {
  kTensorParallel,  // base_model_tp_plan
  kExpertParallel,  // base_model_ep_plan (grouped_gemm -> experts)
};

// Translates the plan of a Hugging Face config.json (top level, or
// `text_config` when the top level has none) into Rules; the table of
// equivalences is in hf_plan.cpp. PATH only names the file in errors.
// Errors: kTpPlanJson (syntax, no plan, bad head/expert counts), kTpBadPattern.
Result<Plan> PlanFromHfConfig(std::string_view config_json,
                              const std::string& path,
                              HfPlanKind kind = HfPlanKind::kTensorParallel);

}  // namespace shardload::tp
