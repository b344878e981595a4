// Translates a Hugging Face config.json's `base_model_tp_plan` (or
// `base_model_ep_plan`) into a Plan of our Rules.
// Thread-safe: no shared state.
//
// MATCHING. A plan key is a module (or parameter) path relative to the base
// model; all-digit components of the key become `*`. Key K becomes the glob
// `**.K`, so it matches under any prefix (`model.`, `language_model.model.`);
// with the splitter's parent rule it covers `.weight`, `.bias` and other
// parameter suffixes. As in transformers' _get_parameter_tp_plan, the full
// name is tried against every key before its parent (MatchOrder::kNameFirst),
// and among keys matching the same name the one with more components wins.
// `*` here matches any component, not only numbers (HF normalises numbers to
// `*` and compares exactly); no real module path differs by that.
//
// STYLES.
//   colwise, colwise_rep, colwise_gather_output, local_colwise,
//     colwise_allgather                                  -> col
//   rowwise, rowwise_rep, rowwise_split_input, local_rowwise -> row
//   packed_colwise                                       -> col blocks 2
//   packed_rowwise, local_packed_rowwise                 -> row blocks 2
//   embedding_rowwise                                    -> vocab, uneven chunk
//   grouped_gemm                                         -> col dim 0, uneven exact
//   anything else (replicate, sequence_parallel, local, gather, ep_router,
//     moe_tp_experts, replicated_with_grad_allreduce, ...) -> replicate
// The suffixes (_rep, _gather_output, _split_input, local_) change only the
// communication, never the slice. `local` divides values by W in HF; we
// load the values as they are. The plan's uneven rule is chunk (DTensor's
// Shard), unmatched tensors are replicated.
//
// ATTENTION HEADS. With num_attention_heads Hq, num_key_value_heads Hkv
// (default Hq) and head_dim D (default hidden_size / Hq):
//   q_proj col -> unit D;  k_proj, v_proj col -> unit D, replicate_when_fewer
//   qkv_proj col -> blocks [Hq*D, Hkv*D, Hkv*D], unit D, rwf [false, true, true]
//   o_proj row -> unit D   (so it pairs with q's whole heads when uneven)
// HF itself splits these by rows; the two agree whenever D*W divides the
// rows and Hkv >= W.
//
// MIXTURE OF EXPERTS. transformers v5 plans name the fused runtime
// parameters (`mlp.experts.gate_up_proj` [E, 2I, H], `mlp.experts.down_proj`
// [E, H, I]); checkpoints usually hold per-expert nn.Linear tensors. For a
// key `P.experts.gate_up_proj` we also add `P.experts.{expert}.gate_proj` and
// `.up_proj`, and for `P.experts.down_proj` we add `P.experts.{expert}.down_proj`;
// when P ends in `mlp`, Mixtral's `block_sparse_moe.experts.{expert}.w1`/`w3`
// (gate/up) and `.w2` (down) as well. Equivalences:
//   packed_colwise(gate_up [E,2I,H])  == col on each gate_proj/up_proj, w1/w3
//   rowwise(down [E,H,I])             == row on each down_proj, w2
//   any other split of them (Llama4's transposed packed_rowwise/colwise)
//                                     == the same col/row: per-expert tensors
//                                        are nn.Linear [out, in]
//   grouped_gemm (ep plan)            == experts (placement linear, uneven
//                                        exact, E from num_experts /
//                                        num_local_experts / n_routed_experts)
// The key's own rule still applies to fused tensors in the checkpoint.
//
// EXPERT PARALLELISM. A key with an `experts.*` (or `experts.N`) component
// matches per-expert tensors and captures `{expert}` there, so that a job
// with expert parallelism (layout.h) knows them as expert tensors.
//
// PIPELINE. config.json's base_model_pp_plan (beside the plan) names the
// embedding, layer and norm modules (pipeline.h).
//
// QUANTIZATION. `quantization_config` (top level, else beside the plan in
// text_config) gives Plan::quant (quant.h): companions such as
// `o_proj.weight_scale_inv` follow their weight's rule and split.
#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <rapidjson/document.h>

#include "tp/json_util.h"
#include "tp/tp_plan.h"

namespace shardload::tp {
namespace {

// Head and expert counts from the config (absent: nullopt).
struct HfDims {
  std::optional<std::uint64_t> heads;
  std::optional<std::uint64_t> kv_heads;
  std::optional<std::uint64_t> head_dim;
  std::optional<std::uint64_t> experts;
};

Error ConfigError(const std::string& path, std::string detail) {
  return MakeError(ErrorCode::kTpPlanJson, path, {}, std::move(detail));
}

Result<HfDims> ReadDims(const JsonValue& cfg, const std::string& path) {
  std::array<std::optional<std::uint64_t>, 7> v;
  constexpr std::array<std::string_view, 7> kKeys = {
      "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size",
      "num_experts", "num_local_experts", "n_routed_experts"};
  for (std::size_t i = 0; i < kKeys.size(); ++i) {
    Result<std::optional<std::uint64_t>> count = ReadCount(cfg, kKeys[i], path);
    if (!count) return std::move(count).error();
    v[i] = *count;
  }
  HfDims dims{v[0], v[1] ? v[1] : v[0], v[2], v[4] ? v[4] : v[5] ? v[5] : v[6]};
  if (!dims.head_dim && dims.heads && v[3]) {
    if (*v[3] % *dims.heads != 0) {
      return ConfigError(path, fmt::format("hidden_size {} is not a multiple of "
                                           "num_attention_heads {} (give head_dim)",
                                           *v[3], *dims.heads));
    }
    dims.head_dim = *v[3] / *dims.heads;
  }
  return dims;
}

struct HfStyle {
  Style style = Style::kReplicate;
  std::uint64_t blocks = 1;
  std::optional<std::int64_t> dim;
  std::optional<Uneven> uneven;
};

HfStyle TranslateStyle(std::string_view s) {
  constexpr std::array<std::string_view, 5> kCol = {
      "colwise", "colwise_rep", "colwise_gather_output", "local_colwise",
      "colwise_allgather"};
  constexpr std::array<std::string_view, 4> kRow = {
      "rowwise", "rowwise_rep", "rowwise_split_input", "local_rowwise"};
  auto in = [&](const auto& list) {
    return std::find(list.begin(), list.end(), s) != list.end();
  };
  if (in(kCol)) return {Style::kCol, 1, {}, {}};
  if (in(kRow)) return {Style::kRow, 1, {}, {}};
  if (s == "packed_colwise") return {Style::kCol, 2, {}, {}};
  if (s == "packed_rowwise" || s == "local_packed_rowwise") return {Style::kRow, 2, {}, {}};
  if (s == "embedding_rowwise") return {Style::kVocab, 1, {}, Uneven::kChunk};
  if (s == "grouped_gemm") return {Style::kCol, 1, 0, Uneven::kExact};
  return {};
}

std::vector<std::string> SplitKey(std::string_view key) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = key.find('.', start);
    std::string_view c = key.substr(start, dot - start);
    bool digits = !c.empty() && c.find_first_not_of("0123456789") == std::string_view::npos;
    out.emplace_back(digits ? "*" : std::string(c));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

std::string Describe(const Rule& r) {
  std::string out(StyleName(r.style));
  if (r.dim) out += fmt::format(" dim {}", *r.dim);
  if (r.unit != 1) out += fmt::format(" unit {}", r.unit);
  if (!r.block_sizes.empty()) out += fmt::format(" blocks [{}]", fmt::join(r.block_sizes, ", "));
  if (r.block_sizes.empty() && r.block_count != 1) out += fmt::format(" blocks {}", r.block_count);
  if (r.replicate_when_fewer != std::vector<bool>{false}) {
    std::vector<std::string_view> flags;
    for (bool f : r.replicate_when_fewer) flags.push_back(f ? "true" : "false");
    out += fmt::format(" replicate_when_fewer [{}]", fmt::join(flags, ", "));
  }
  if (r.style != Style::kReplicate) out += fmt::format(" uneven {}", UnevenName(r.uneven));
  if (r.style == Style::kExperts) out += fmt::format(" num_experts {}", r.num_experts);
  return out;
}

class HfPlanBuilder {
 public:
  HfPlanBuilder(const std::string& path, std::string_view plan_name, const HfDims& dims)
      : path_(path), plan_name_(plan_name), dims_(dims) {}

  Status Add(std::string_view key, std::string_view style);
  Plan Finish() &&;

 private:
  struct Entry {
    std::size_t components;
    Rule rule;
  };

  Status Push(const std::vector<std::string>& comps, Rule rule, std::string_view key,
              std::string_view style, std::string_view note);
  void ApplyHeads(const std::string& module, Rule& rule) const;
  Status AddExpertRules(std::vector<std::string> comps, const HfStyle& hf,
                        std::string_view key, std::string_view style);
  Status PushNames(std::vector<std::string> prefix,
                   const std::vector<std::string_view>& names, const Rule& rule,
                   std::string_view key, std::string_view style, std::string_view what);

  const std::string& path_;
  std::string_view plan_name_;
  HfDims dims_;
  std::vector<Entry> entries_;
};

Status HfPlanBuilder::Push(const std::vector<std::string>& comps, Rule rule,
                           std::string_view key, std::string_view style,
                           std::string_view note) {
  std::string glob = fmt::format("**.{}", fmt::join(comps, "."));
  rule.label = fmt::format("{} \"{}\": \"{}\" -> {}{}", plan_name_, key, style, note,
                           Describe(rule));
  Result<Pattern> pattern = Pattern::Compile(glob);
  if (!pattern) {
    return MakeError(ErrorCode::kTpBadPattern, path_, {},
                     fmt::format("{} key \"{}\": {}", plan_name_, key,
                                 pattern.error().detail));
  }
  rule.pattern = std::move(*pattern);
  entries_.push_back({comps.size(), std::move(rule)});
  return {};
}

void HfPlanBuilder::ApplyHeads(const std::string& module, Rule& rule) const {
  if (!dims_.heads || !dims_.kv_heads || !dims_.head_dim || rule.block_count != 1) return;
  const std::uint64_t d = *dims_.head_dim;
  if (rule.style == Style::kCol && (module == "q_proj" || module == "k_proj" ||
                                    module == "v_proj")) {
    rule.unit = d;
    rule.replicate_when_fewer = {module != "q_proj"};
  } else if (rule.style == Style::kCol && module == "qkv_proj") {
    rule.unit = d;
    rule.block_sizes = {*dims_.heads * d, *dims_.kv_heads * d, *dims_.kv_heads * d};
    rule.block_count = 3;
    rule.replicate_when_fewer = {false, true, true};
  } else if (rule.style == Style::kRow && module == "o_proj") {
    rule.unit = d;
  }
}

Status HfPlanBuilder::Add(std::string_view key, std::string_view style) {
  std::vector<std::string> comps = SplitKey(key);
  for (std::size_t i = 1; i < comps.size(); ++i) {  // per-expert keys capture the expert
    if (comps[i] == "*" && comps[i - 1] == "experts") comps[i] = "{expert}";
  }
  HfStyle hf = TranslateStyle(style);
  Rule rule;
  rule.style = hf.style;
  rule.block_count = hf.blocks;
  rule.dim = hf.dim;
  rule.uneven = hf.uneven.value_or(Uneven::kChunk);
  ApplyHeads(comps.back(), rule);
  // Labels and errors quote the key and style clipped (util/clip_name.h).
  const std::string shown_key = ClipName(key), shown_style = ClipName(style);
  if (Status s = Push(comps, std::move(rule), shown_key, shown_style, ""); !s) return s;
  if (comps.size() >= 2 && comps[comps.size() - 2] == "experts" &&
      (comps.back() == "gate_up_proj" || comps.back() == "down_proj")) {
    return AddExpertRules(std::move(comps), hf, shown_key, shown_style);
  }
  return {};
}

// Per-expert equivalents of a fused `experts.gate_up_proj` / `.down_proj` key.
Status HfPlanBuilder::AddExpertRules(std::vector<std::string> comps, const HfStyle& hf,
                                     std::string_view key, std::string_view style) {
  const bool gate_up = comps.back() == "gate_up_proj";
  Rule rule;
  if (style == "grouped_gemm") {
    if (!dims_.experts) {
      return ConfigError(path_, fmt::format("{} \"{}\": grouped_gemm needs num_experts, "
                                            "num_local_experts or n_routed_experts",
                                            plan_name_, key));
    }
    rule.style = Style::kExperts;
    rule.num_experts = *dims_.experts;
    rule.uneven = Uneven::kExact;
  } else if (hf.style == Style::kCol || hf.style == Style::kRow) {
    rule.style = gate_up ? Style::kCol : Style::kRow;
  } else {
    return {};  // replicated either way
  }
  comps.back() = "{expert}";
  using Names = std::vector<std::string_view>;
  Names names = gate_up ? Names{"gate_proj", "up_proj"} : Names{"down_proj"};
  if (Status s = PushNames(comps, names, rule, key, style, "per-expert"); !s) return s;
  if (comps.size() < 3 || comps[comps.size() - 3] != "mlp") return {};
  comps[comps.size() - 3] = "block_sparse_moe";
  Names mixtral = gate_up ? Names{"w1", "w3"} : Names{"w2"};
  return PushNames(comps, mixtral, rule, key, style, "Mixtral");
}

// One rule per NAME, each matching PREFIX.NAME.
Status HfPlanBuilder::PushNames(std::vector<std::string> prefix,
                                const std::vector<std::string_view>& names,
                                const Rule& rule, std::string_view key,
                                std::string_view style, std::string_view what) {
  for (std::string_view name : names) {
    prefix.emplace_back(name);
    std::string note = fmt::format("{} {}: ", what, name);
    if (Status s = Push(prefix, rule, key, style, note); !s) return s;
    prefix.pop_back();
  }
  return {};
}

Plan HfPlanBuilder::Finish() && {
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
    return a.components > b.components;
  });
  Plan plan;
  plan.path = path_;
  plan.order = MatchOrder::kNameFirst;
  for (Entry& e : entries_) plan.rules.push_back(std::move(e.rule));
  return plan;
}

// The object holding the plan: the top level, else `text_config`.
Result<const JsonValue*> FindConfig(const JsonValue& root, std::string_view plan_name,
                                    const std::string& path) {
  const JsonValue* plan = FindMember(root, plan_name);
  if (plan != nullptr && !plan->IsNull()) return &root;
  const JsonValue* text = FindMember(root, "text_config");
  if (text != nullptr && text->IsObject()) {
    if (Status s = CheckUniqueKeys(*text, "text_config", ErrorCode::kTpPlanJson, path); !s) {
      return s.error();
    }
    plan = FindMember(*text, plan_name);
    if (plan != nullptr && !plan->IsNull()) return text;
  }
  return ConfigError(path, fmt::format("no \"{}\" in the config (nor in its "
                                       "text_config)", plan_name));
}

Result<Plan> TranslatePlan(const JsonValue& cfg, std::string_view plan_name,
                           const std::string& path) {
  const JsonValue& entries = *FindMember(cfg, plan_name);
  if (!entries.IsObject()) {
    return ConfigError(path, fmt::format("\"{}\" must be an object, got {}", plan_name,
                                         JsonTypeName(entries)));
  }
  if (entries.MemberCount() > kMaxPlanRules) {
    return ConfigError(path, fmt::format("\"{}\" has {} entries; a plan may have at most {}",
                                         plan_name, entries.MemberCount(), kMaxPlanRules));
  }
  if (Status s = CheckUniqueKeys(entries, plan_name, ErrorCode::kTpPlanJson, path); !s) {
    return s.error();
  }
  Result<HfDims> dims = ReadDims(cfg, path);
  if (!dims) return std::move(dims).error();
  HfPlanBuilder builder(path, plan_name, *dims);
  for (const auto& m : entries.GetObject()) {
    if (!m.value.IsString()) {
      return ConfigError(path, fmt::format("{} \"{}\" must be a string, got {}", plan_name,
                                           ClipName(JsonView(m.name)), JsonTypeName(m.value)));
    }
    if (Status s = builder.Add(JsonView(m.name), JsonView(m.value)); !s) return s.error();
  }
  return std::move(builder).Finish();
}

// `quantization_config` of the top level, else of the object holding the
// plan (text_config); none when absent or null.
Result<Quant> ReadHfQuant(const JsonValue& root, const JsonValue& cfg,
                          const std::string& path) {
  for (const JsonValue* where : {&root, &cfg}) {
    const JsonValue* q = FindMember(*where, "quantization_config");
    if (q != nullptr && !q->IsNull()) return ParseQuantConfig(*q, path, /*strict=*/false);
  }
  return Quant{};
}

}  // namespace

Result<Plan> PlanFromHfConfig(std::string_view config_json, const std::string& path,
                              HfPlanKind kind) {
  rapidjson::Document doc;
  if (Status s = ParseJson(config_json, path, doc); !s) return s.error();
  if (!doc.IsObject()) {
    return ConfigError(path, fmt::format("config.json must be a JSON object, got {}",
                                         JsonTypeName(doc)));
  }
  if (Status s = CheckUniqueKeys(doc, "config", ErrorCode::kTpPlanJson, path); !s) {
    return s.error();
  }
  std::string_view plan_name = kind == HfPlanKind::kTensorParallel ? "base_model_tp_plan"
                                                                   : "base_model_ep_plan";
  Result<const JsonValue*> cfg = FindConfig(doc, plan_name, path);
  if (!cfg) return std::move(cfg).error();
  Result<Plan> plan = TranslatePlan(**cfg, plan_name, path);
  if (!plan) return plan;
  Result<Quant> quant = ReadHfQuant(doc, **cfg, path);
  if (!quant) return std::move(quant).error();
  plan->quant = *quant;
  const JsonValue* pp_plan = FindMember(**cfg, "base_model_pp_plan");
  if (pp_plan == nullptr || pp_plan->IsNull()) return plan;
  Result<std::optional<PipelineSpec>> pipeline = PipelineFromPpPlan(*pp_plan, path);
  if (!pipeline) return std::move(pipeline).error();
  plan->pipeline = std::move(*pipeline);
  return plan;
}

}  // namespace shardload::tp
