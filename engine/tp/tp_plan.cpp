// Parses our JSON tensor-parallel plan (tp_plan_version 1) into a Plan; see
// tp_plan.h for the format. Refuses unknown keys, repeated keys, bad option
// types and option combinations that no tensor could make valid.
// Thread-safe: no shared state.
#include <array>
#include <utility>

#include <fmt/format.h>
#include <rapidjson/document.h>

#include "tp/json_util.h"
#include "tp/tp_plan.h"

namespace shardload::tp {
namespace {

constexpr std::array<std::pair<std::string_view, Style>, 6> kStyles = {{
    {"replicate", Style::kReplicate}, {"skip", Style::kSkip},
    {"col", Style::kCol}, {"row", Style::kRow},
    {"vocab", Style::kVocab}, {"experts", Style::kExperts},
}};
constexpr std::array<std::pair<std::string_view, Uneven>, 3> kUnevens = {{
    {"chunk", Uneven::kChunk}, {"balanced", Uneven::kBalanced},
    {"exact", Uneven::kExact},
}};
constexpr std::array<std::pair<std::string_view, Placement>, 2> kPlacements = {{
    {"linear", Placement::kLinear}, {"round_robin", Placement::kRoundRobin},
}};

template <typename T, std::size_t N>
std::optional<T> Lookup(const std::array<std::pair<std::string_view, T>, N>& table,
                        std::string_view name) {
  for (const auto& [key, value] : table) {
    if (key == name) return value;
  }
  return std::nullopt;
}

template <typename T, std::size_t N>
std::string_view NameOf(const std::array<std::pair<std::string_view, T>, N>& table,
                        T value) {
  for (const auto& [key, v] : table) {
    if (v == value) return key;
  }
  return "?";
}

template <typename T, std::size_t N>
std::string Choices(const std::array<std::pair<std::string_view, T>, N>& table) {
  std::string out;
  for (const auto& [key, v] : table) out += (out.empty() ? "" : ", ") + std::string(key);
  return out;
}

// One rule being parsed: the rule, what was given, and how to name it.
struct RuleBuilder {
  RuleBuilder(const std::string& plan_path, std::string rule_label)
      : path(plan_path), label(std::move(rule_label)) {}

  const std::string& path;
  std::string label;
  Rule rule;
  bool uneven_set = false;
  bool rwf_list = false;
  bool num_experts_set = false;

  Error Fail(ErrorCode code, std::string_view detail) const {
    return MakeError(code, path, {}, fmt::format("{}: {}", label, detail));
  }
  Error BadOption(std::string_view option, std::string_view want,
                  const JsonValue& got) const {
    return Fail(ErrorCode::kTpBadRule,
                fmt::format("option `{}` must be {}, got {}", option, want,
                            JsonTypeName(got)));
  }
};

bool IsPositive(const JsonValue& v) { return v.IsUint64() && v.GetUint64() > 0; }

Status ParseDim(const JsonValue& v, RuleBuilder& b) {
  if (!v.IsInt64()) return b.BadOption("dim", "an integer", v);
  b.rule.dim = v.GetInt64();
  return {};
}

Status ParseUnit(const JsonValue& v, RuleBuilder& b) {
  if (!IsPositive(v)) return b.BadOption("unit", "a positive integer", v);
  b.rule.unit = v.GetUint64();
  return {};
}

Status ParseBlocks(const JsonValue& v, RuleBuilder& b) {
  constexpr std::string_view kWant =
      "a positive integer or a non-empty list of positive integers";
  if (IsPositive(v)) {
    b.rule.block_count = v.GetUint64();
    return {};
  }
  if (!v.IsArray() || v.Empty()) return b.BadOption("blocks", kWant, v);
  for (const JsonValue& size : v.GetArray()) {
    if (!IsPositive(size)) return b.BadOption("blocks", kWant, size);
    b.rule.block_sizes.push_back(size.GetUint64());
  }
  b.rule.block_count = b.rule.block_sizes.size();
  return {};
}

Status ParseReplicateWhenFewer(const JsonValue& v, RuleBuilder& b) {
  constexpr std::string_view kWant = "true, false or a list of them (one per block)";
  b.rule.replicate_when_fewer.clear();
  if (v.IsBool()) {
    b.rule.replicate_when_fewer.push_back(v.GetBool());
    return {};
  }
  if (!v.IsArray() || v.Empty()) return b.BadOption("replicate_when_fewer", kWant, v);
  for (const JsonValue& flag : v.GetArray()) {
    if (!flag.IsBool()) return b.BadOption("replicate_when_fewer", kWant, flag);
    b.rule.replicate_when_fewer.push_back(flag.GetBool());
  }
  b.rwf_list = true;
  return {};
}

Status ParseUnevenOption(const JsonValue& v, RuleBuilder& b) {
  std::optional<Uneven> u = v.IsString() ? Lookup(kUnevens, JsonView(v)) : std::nullopt;
  if (!u) return b.BadOption("uneven", "one of " + Choices(kUnevens), v);
  b.rule.uneven = *u;
  b.uneven_set = true;
  return {};
}

Status ParsePadTo(const JsonValue& v, RuleBuilder& b) {
  if (!IsPositive(v)) return b.BadOption("pad_to", "a positive integer", v);
  b.rule.pad_to = v.GetUint64();
  return {};
}

Status ParseNumExperts(const JsonValue& v, RuleBuilder& b) {
  if (!IsPositive(v)) return b.BadOption("num_experts", "a positive integer", v);
  b.rule.num_experts = v.GetUint64();
  b.num_experts_set = true;
  return {};
}

Status ParsePlacement(const JsonValue& v, RuleBuilder& b) {
  std::optional<Placement> p =
      v.IsString() ? Lookup(kPlacements, JsonView(v)) : std::nullopt;
  if (!p) return b.BadOption("placement", "one of " + Choices(kPlacements), v);
  b.rule.placement = *p;
  return {};
}

constexpr unsigned Bit(Style s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned kSplit = Bit(Style::kCol) | Bit(Style::kRow);

struct OptionSpec {
  std::string_view name;
  unsigned styles;  // Bit(style) of the styles that take it
  Status (*parse)(const JsonValue&, RuleBuilder&);
};
constexpr std::array<OptionSpec, 8> kOptions = {{
    {"dim", kSplit, ParseDim},
    {"unit", kSplit, ParseUnit},
    {"blocks", kSplit, ParseBlocks},
    {"replicate_when_fewer", kSplit, ParseReplicateWhenFewer},
    {"uneven", kSplit | Bit(Style::kVocab) | Bit(Style::kExperts), ParseUnevenOption},
    {"pad_to", Bit(Style::kVocab), ParsePadTo},
    {"num_experts", Bit(Style::kExperts), ParseNumExperts},
    {"placement", Bit(Style::kExperts), ParsePlacement},
}};

Status ParseOption(std::string_view key, const JsonValue& v, RuleBuilder& b) {
  for (const OptionSpec& spec : kOptions) {
    if (spec.name != key) continue;
    if ((spec.styles & Bit(b.rule.style)) == 0) break;
    return spec.parse(v, b);
  }
  return b.Fail(ErrorCode::kTpBadRule,
                fmt::format("unknown option `{}` for split `{}`", ClipName(key),
                            StyleName(b.rule.style)));
}

// Checks that need every option, and resolves the rule's Uneven.
Status FinishRule(RuleBuilder& b, Uneven plan_uneven) {
  Rule& r = b.rule;
  if (b.rwf_list && r.replicate_when_fewer.size() != r.block_count) {
    return b.Fail(ErrorCode::kTpBadRule,
                  fmt::format("replicate_when_fewer lists {} values but the rule "
                              "has {} block(s)",
                              r.replicate_when_fewer.size(), r.block_count));
  }
  if (r.style == Style::kExperts) {
    if (!b.num_experts_set) {
      return b.Fail(ErrorCode::kTpBadRule, "split `experts` needs `num_experts`");
    }
    if (!r.pattern.has_expert()) {
      return b.Fail(ErrorCode::kTpBadRule,
                    "split `experts` needs a pattern that captures `{expert}`");
    }
    if (r.placement == Placement::kRoundRobin && b.uneven_set &&
        r.uneven == Uneven::kChunk) {
      return b.Fail(ErrorCode::kTpBadRule,
                    "placement `round_robin` takes uneven `balanced` or `exact`");
    }
  }
  if (!b.uneven_set) {
    r.uneven = r.style == Style::kVocab     ? Uneven::kExact
               : r.style == Style::kExperts ? Uneven::kBalanced
                                            : plan_uneven;
  }
  return {};
}

// "match" and "split": the pattern, style and label of rules[INDEX].
Status ParseRuleHead(const JsonValue& v, std::size_t index, RuleBuilder& b) {
  const JsonValue* match = FindMember(v, "match");
  const JsonValue* split = FindMember(v, "split");
  if (match == nullptr || !match->IsString()) {
    return b.Fail(ErrorCode::kTpBadRule, "needs a string `match`");
  }
  b.label = fmt::format("rules[{}] \"{}\"", index, ClipName(JsonView(*match)));
  if (split == nullptr || !split->IsString()) {
    return b.Fail(ErrorCode::kTpBadRule, "needs a string `split`");
  }
  std::optional<Style> style = Lookup(kStyles, JsonView(*split));
  if (!style) {
    return b.Fail(ErrorCode::kTpBadRule,
                  fmt::format("unknown split style `{}` (expected one of {})",
                              ClipName(JsonView(*split)), Choices(kStyles)));
  }
  b.rule.style = *style;
  b.label += fmt::format(" ({})", StyleName(*style));
  Result<Pattern> pattern = Pattern::Compile(JsonView(*match));
  if (!pattern) return b.Fail(ErrorCode::kTpBadPattern, pattern.error().detail);
  b.rule.pattern = std::move(*pattern);
  return {};
}

Result<Rule> ParseRule(const JsonValue& v, std::size_t index, const Plan& plan) {
  RuleBuilder b(plan.path, fmt::format("rules[{}]", index));
  if (!v.IsObject()) {
    return b.Fail(ErrorCode::kTpBadRule,
                  fmt::format("must be an object, got {}", JsonTypeName(v)));
  }
  if (Status s = ParseRuleHead(v, index, b); !s) return s.error();
  if (Status s = CheckUniqueKeys(v, b.label, ErrorCode::kTpBadRule, plan.path); !s) {
    return s.error();
  }
  for (const auto& m : v.GetObject()) {
    std::string_view key = JsonView(m.name);
    if (key == "match" || key == "split") continue;
    if (Status s = ParseOption(key, m.value, b); !s) return s.error();
  }
  if (Status s = FinishRule(b, plan.uneven); !s) return s.error();
  b.rule.label = std::move(b.label);
  return std::move(b.rule);
}

Error PlanError(const std::string& path, std::string detail) {
  return MakeError(ErrorCode::kTpPlanJson, path, {}, std::move(detail));
}

Status ParseEnumKey(const JsonValue& v, std::string_view key, Plan& plan) {
  if (key == "uneven") {
    std::optional<Uneven> u = v.IsString() ? Lookup(kUnevens, JsonView(v)) : std::nullopt;
    if (!u) return PlanError(plan.path, "\"uneven\" must be one of " + Choices(kUnevens));
    plan.uneven = *u;
    return {};
  }
  bool replicate = v.IsString() && JsonView(v) == "replicate";
  if (!replicate && !(v.IsString() && JsonView(v) == "error")) {
    return PlanError(plan.path, "\"unmatched\" must be \"replicate\" or \"error\"");
  }
  plan.unmatched = replicate ? Unmatched::kReplicate : Unmatched::kError;
  return {};
}

// "pipeline" (pipeline.h) or "num_layers".
Status ParsePipelineKey(const JsonValue& v, std::string_view key, Plan& plan) {
  if (key == "pipeline") {
    Result<PipelineSpec> spec = ParsePipelineJson(v, plan.path);
    if (!spec) return std::move(spec).error();
    plan.pipeline = std::move(*spec);
    return {};
  }
  if (!v.IsUint64() || v.GetUint64() == 0) {
    return PlanError(plan.path, fmt::format("\"num_layers\" must be a positive integer, got {}",
                                            JsonTypeName(v)));
  }
  plan.num_layers = v.GetUint64();
  return {};
}

// The top-level keys; returns the "rules" array through RULES.
Status ParseTopLevel(const JsonValue& root, Plan& plan, const JsonValue** rules) {
  bool have_version = false;
  for (const auto& m : root.GetObject()) {
    std::string_view key = JsonView(m.name);
    if (key == "tp_plan_version") {
      if (!m.value.IsUint64() || m.value.GetUint64() != 1) {
        return PlanError(plan.path, "\"tp_plan_version\" must be 1");
      }
      have_version = true;
    } else if (key == "uneven" || key == "unmatched") {
      if (Status s = ParseEnumKey(m.value, key, plan); !s) return s;
    } else if (key == "quantization_config") {
      Result<Quant> quant = ParseQuantConfig(m.value, plan.path, /*strict=*/true);
      if (!quant) return std::move(quant).error();
      plan.quant = *quant;
    } else if (key == "pipeline" || key == "num_layers") {
      if (Status s = ParsePipelineKey(m.value, key, plan); !s) return s;
    } else if (key == "rules") {
      if (!m.value.IsArray()) return PlanError(plan.path, "\"rules\" must be an array");
      *rules = &m.value;
    } else {
      return PlanError(plan.path, fmt::format("unknown key \"{}\" (expected "
                                              "tp_plan_version, uneven, "
                                              "unmatched, quantization_config, num_layers, "
                                              "pipeline, rules)", ClipName(key)));
    }
  }
  if (!have_version) return PlanError(plan.path, "\"tp_plan_version\": 1 is missing");
  if (*rules == nullptr) return PlanError(plan.path, "\"rules\" is missing");
  return {};
}

}  // namespace

std::string_view StyleName(Style style) { return NameOf(kStyles, style); }
std::string_view UnevenName(Uneven uneven) { return NameOf(kUnevens, uneven); }
std::string_view PlacementName(Placement placement) {
  return NameOf(kPlacements, placement);
}

Result<Plan> ParsePlanJson(std::string_view text, const std::string& path) {
  Plan plan;
  plan.path = path;
  rapidjson::Document doc;
  if (Status s = ParseJson(text, path, doc); !s) return s.error();
  if (!doc.IsObject()) {
    return PlanError(path, fmt::format("a plan must be a JSON object, got {}",
                                       JsonTypeName(doc)));
  }
  if (Status s = CheckUniqueKeys(doc, "the plan", ErrorCode::kTpPlanJson, path); !s) {
    return s.error();
  }
  const JsonValue* rules = nullptr;
  if (Status s = ParseTopLevel(doc, plan, &rules); !s) return s.error();
  if (rules->Size() > kMaxPlanRules) {
    return PlanError(path, fmt::format("\"rules\" has {} rules; a plan may have at most {}",
                                       rules->Size(), kMaxPlanRules));
  }
  plan.rules.reserve(rules->Size());
  for (rapidjson::SizeType i = 0; i < rules->Size(); ++i) {
    Result<Rule> rule = ParseRule((*rules)[i], i, plan);
    if (!rule) return std::move(rule).error();
    plan.rules.push_back(std::move(*rule));
  }
  return plan;
}

}  // namespace shardload::tp
