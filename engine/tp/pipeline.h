// Pipeline parallelism: which stage a tensor belongs to, and the model facts
// a job's layout needs from config.json (layer and expert counts, tied
// embeddings). Pure computation over names and JSON text; callers read the
// files.
// Thread-safe after construction: a PipelineSpec is an immutable value.
//
// A tensor's LAYER is the `{layer}` capture of the first layer pattern that
// matches its name (default `model.layers.{layer}.**` and
// `model.language_model.layers.{layer}.**`). Layer l < L goes to the stage
// holding l; l >= L (multi-token-prediction layers) to the last stage.
// Tensors without a layer: those matching a `first` glob (default
// `**.embed_tokens`) on the first stage, a `last` glob (default `**.norm`,
// `**.lm_head`) on the last, anything else on the first. With
// tie_word_embeddings and no lm_head tensor in the checkpoint, the `first`
// tensors (the embedding) go on the first and the last stage. Globs are tried
// against the name and the name without its last component, as plan rules
// are (so a module glob covers `.weight` and `.bias`).
//
// Sources: our plan JSON's
//   "pipeline": {"layer": PATTERN, "first": [GLOBS], "last": [GLOBS]}
// (each key optional, defaults as above), or, under a Hugging Face plan,
// config.json's base_model_pp_plan: its entry named `layers` (or ending in
// `.layers`) is the layer module, the entries before it go first and those
// after it last (`lm_head`, outside the base model, is always last); each
// key K is taken under `model.` and `model.language_model.`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardload/error.h"
#include "tp/json_util.h"
#include "tp/pattern.h"

namespace shardload::tp {

struct PipelineSpec {
  std::vector<Pattern> layer;   // each captures `{layer}`
  std::vector<Pattern> first;
  std::vector<Pattern> last;
  std::string source = "default";  // names the spec in `plan` output and errors
};

// The defaults above.
PipelineSpec DefaultPipeline();

// Our plan's "pipeline" object. PATH only names the file in errors.
// Errors: kTpPlanJson (shape, unknown or repeated keys), kTpBadPattern.
Result<PipelineSpec> ParsePipelineJson(const JsonValue& value, const std::string& path);

// A Hugging Face base_model_pp_plan object; nullopt when it names no layer
// module (the defaults then apply). Errors: kTpPlanJson, kTpBadPattern.
Result<std::optional<PipelineSpec>> PipelineFromPpPlan(const JsonValue& pp_plan,
                                                       const std::string& path);

// What config.json says about the model (top level, else text_config).
struct ModelInfo {
  std::string path;                          // the config.json; names it in errors
  std::optional<std::uint64_t> num_layers;   // num_hidden_layers
  // n_routed_experts, else num_local_experts, else num_experts.
  std::optional<std::uint64_t> num_experts;
  bool tie_word_embeddings = true;           // Hugging Face's default when absent
};

// Reads TEXT (a config.json). Errors: kTpPlanJson (not JSON, or a count that
// is not a positive integer).
Result<ModelInfo> ParseModelInfo(std::string_view text, const std::string& path);

// Where a tensor goes, before the stages are known.
struct StagePlace {
  enum class Kind : std::uint8_t { kLayer, kFirst, kLast, kFirstAndLast };
  Kind kind = Kind::kFirst;
  std::uint64_t layer = 0;  // kLayer
};

// The place of NAME under SPEC; TIED_EMBEDDING: tie_word_embeddings and no
// lm_head tensor (the `first` tensors then also go last).
StagePlace PlaceTensor(const PipelineSpec& spec, std::string_view name, bool tied_embedding);

// Whether NAME is an lm_head tensor (`lm_head` as its module or parent
// module's last component).
bool IsLmHead(std::string_view name);

}  // namespace shardload::tp
