// Pipeline stages of tensors and the model facts of config.json (see
// pipeline.h).
// Thread-safe: no shared state.
#include "tp/pipeline.h"

#include <array>
#include <utility>

#include <fmt/format.h>
#include <rapidjson/document.h>

namespace shardload::tp {
namespace {

constexpr std::string_view kLayerToken = "{layer}";

Error JsonError(const std::string& path, std::string detail) {
  return MakeError(ErrorCode::kTpPlanJson, path, {}, std::move(detail));
}

// Compiles TEXT (WHERE names it in errors).
Result<Pattern> CompileIn(std::string_view text, std::string_view capture,
                          const std::string& path, std::string_view where) {
  Result<Pattern> p = Pattern::Compile(text, capture);
  if (!p) {
    return MakeError(ErrorCode::kTpBadPattern, path, {},
                     fmt::format("{} \"{}\": {}", where, text, p.error().detail));
  }
  return p;
}

// Appends the patterns of TEXTS.
Status AddAll(std::vector<Pattern>& out, std::initializer_list<std::string_view> texts,
              std::string_view capture, const std::string& path, std::string_view where) {
  for (std::string_view text : texts) {
    Result<Pattern> p = CompileIn(text, capture, path, where);
    if (!p) return std::move(p).error();
    out.push_back(std::move(*p));
  }
  return {};
}

// "pipeline"."first" / "last": a list of globs.
Status ParseGlobList(const JsonValue& v, std::string_view key, const std::string& path,
                     std::vector<Pattern>& out) {
  if (!v.IsArray()) {
    return JsonError(path, fmt::format("\"pipeline\".\"{}\" must be a list of globs, got {}",
                                       key, JsonTypeName(v)));
  }
  out.clear();
  for (const JsonValue& g : v.GetArray()) {
    if (!g.IsString()) {
      return JsonError(path, fmt::format("\"pipeline\".\"{}\" must hold strings, got {}", key,
                                         JsonTypeName(g)));
    }
    Result<Pattern> p = CompileIn(JsonView(g), "{expert}", path,
                                  fmt::format("\"pipeline\".\"{}\"", key));
    if (!p) return std::move(p).error();
    out.push_back(std::move(*p));
  }
  return {};
}

Status ParseLayerPattern(const JsonValue& v, const std::string& path, PipelineSpec& spec) {
  if (!v.IsString()) {
    return JsonError(path, fmt::format("\"pipeline\".\"layer\" must be a pattern string, got {}",
                                       JsonTypeName(v)));
  }
  Result<Pattern> p = CompileIn(JsonView(v), kLayerToken, path, "\"pipeline\".\"layer\"");
  if (!p) return std::move(p).error();
  if (!p->has_expert()) {
    return MakeError(ErrorCode::kTpBadPattern, path, {},
                     fmt::format("\"pipeline\".\"layer\" \"{}\" must capture `{{layer}}`",
                                 JsonView(v)));
  }
  spec.layer = {std::move(*p)};
  return {};
}

// A match that succeeded (Pattern::Match never fails today; a failure is a
// miss).
bool Hit(const Result<bool>& r) { return r && *r; }

// Whether PATTERN matches NAME or NAME without its last component; the
// `{expert}`-style capture (here the layer) goes to *CAPTURE.
bool MatchesModule(const Pattern& pattern, std::string_view name,
                   std::optional<std::uint64_t>* capture) {
  if (Hit(pattern.Match(name, capture))) return true;
  std::size_t dot = name.rfind('.');
  return dot != std::string_view::npos && Hit(pattern.Match(name.substr(0, dot), capture));
}

bool MatchesAny(const std::vector<Pattern>& patterns, std::string_view name) {
  for (const Pattern& p : patterns) {
    if (MatchesModule(p, name, nullptr)) return true;
  }
  return false;
}

// The first of KEYS present in CFG.
Result<std::optional<std::uint64_t>> FirstCount(const JsonValue& cfg,
                                                std::initializer_list<std::string_view> keys,
                                                const std::string& path) {
  for (std::string_view key : keys) {
    auto count = ReadCount(cfg, key, path);
    if (!count || *count) return count;
  }
  return std::optional<std::uint64_t>();
}

// Fills what INFO lacks from CFG (one object: the top level or text_config).
Status ReadModelKeys(const JsonValue& cfg, ModelInfo& info, bool& tie_seen) {
  if (!info.num_layers) {
    auto layers = ReadCount(cfg, "num_hidden_layers", info.path);
    if (!layers) return std::move(layers).error();
    info.num_layers = *layers;
  }
  if (!info.num_experts) {
    auto experts =
        FirstCount(cfg, {"n_routed_experts", "num_local_experts", "num_experts"}, info.path);
    if (!experts) return std::move(experts).error();
    info.num_experts = *experts;
  }
  const JsonValue* tie = FindMember(cfg, "tie_word_embeddings");
  if (!tie_seen && tie != nullptr && tie->IsBool()) {
    info.tie_word_embeddings = tie->GetBool();
    tie_seen = true;
  }
  return {};
}

}  // namespace

PipelineSpec DefaultPipeline() {
  PipelineSpec spec;
  const std::string none;
  // The defaults are valid patterns: Compile cannot fail on them.
  (void)AddAll(spec.layer, {"model.layers.{layer}.**", "model.language_model.layers.{layer}.**"},
               kLayerToken, none, "default");
  (void)AddAll(spec.first, {"**.embed_tokens"}, "{expert}", none, "default");
  (void)AddAll(spec.last, {"**.norm", "**.lm_head"}, "{expert}", none, "default");
  return spec;
}

Result<PipelineSpec> ParsePipelineJson(const JsonValue& value, const std::string& path) {
  if (!value.IsObject()) {
    return JsonError(path, fmt::format("\"pipeline\" must be an object, got {}",
                                       JsonTypeName(value)));
  }
  if (Status s = CheckUniqueKeys(value, "\"pipeline\"", ErrorCode::kTpPlanJson, path); !s) {
    return s.error();
  }
  PipelineSpec spec = DefaultPipeline();
  spec.source = "the plan's \"pipeline\"";
  for (const auto& m : value.GetObject()) {
    std::string_view key = JsonView(m.name);
    Status s = key == "layer"   ? ParseLayerPattern(m.value, path, spec)
               : key == "first" ? ParseGlobList(m.value, key, path, spec.first)
               : key == "last"  ? ParseGlobList(m.value, key, path, spec.last)
                                : Status(JsonError(path, fmt::format(
                                      "unknown key \"pipeline\".\"{}\" (expected layer, "
                                      "first, last)", key)));
    if (!s) return s.error();
  }
  return spec;
}

Result<std::optional<PipelineSpec>> PipelineFromPpPlan(const JsonValue& pp_plan,
                                                       const std::string& path) {
  if (!pp_plan.IsObject()) {
    return JsonError(path, fmt::format("\"base_model_pp_plan\" must be an object, got {}",
                                       JsonTypeName(pp_plan)));
  }
  PipelineSpec spec;
  spec.source = "base_model_pp_plan";
  bool seen_layers = false;
  for (const auto& m : pp_plan.GetObject()) {
    const std::string key(JsonView(m.name));
    if (key == "layers" || key.ends_with(".layers")) {
      if (seen_layers) continue;  // the first layer module only
      seen_layers = true;
      const std::string a = "model." + key + ".{layer}.**";
      const std::string b = "model.language_model." + key + ".{layer}.**";
      if (Status s = AddAll(spec.layer, {a, b}, kLayerToken, path, "base_model_pp_plan"); !s) {
        return s.error();
      }
      continue;
    }
    const std::string a = "model." + key, b = "model.language_model." + key;
    std::vector<Pattern>& to = seen_layers ? spec.last : spec.first;
    if (Status s = AddAll(to, {a, b}, "{expert}", path, "base_model_pp_plan"); !s) {
      return s.error();
    }
  }
  if (!seen_layers) return std::optional<PipelineSpec>();
  if (Status s = AddAll(spec.last, {"**.lm_head"}, "{expert}", path, "base_model_pp_plan"); !s) {
    return s.error();
  }
  return std::optional<PipelineSpec>(std::move(spec));
}

Result<ModelInfo> ParseModelInfo(std::string_view text, const std::string& path) {
  ModelInfo info;
  info.path = path;
  rapidjson::Document doc;
  if (Status s = ParseJson(text, path, doc); !s) return s.error();
  if (!doc.IsObject()) {
    return JsonError(path, fmt::format("config.json must be a JSON object, got {}",
                                       JsonTypeName(doc)));
  }
  bool tie_seen = false;
  if (Status s = ReadModelKeys(doc, info, tie_seen); !s) return s.error();
  const JsonValue* text_config = FindMember(doc, "text_config");
  if (text_config != nullptr && text_config->IsObject()) {
    if (Status s = ReadModelKeys(*text_config, info, tie_seen); !s) return s.error();
  }
  return info;
}

StagePlace PlaceTensor(const PipelineSpec& spec, std::string_view name, bool tied_embedding) {
  using Kind = StagePlace::Kind;
  for (const Pattern& p : spec.layer) {
    std::optional<std::uint64_t> layer;
    if (Hit(p.Match(name, &layer)) && layer) return {Kind::kLayer, *layer};
  }
  if (MatchesAny(spec.first, name)) {
    return {tied_embedding ? Kind::kFirstAndLast : Kind::kFirst, 0};
  }
  if (MatchesAny(spec.last, name)) return {Kind::kLast, 0};
  return {Kind::kFirst, 0};
}

bool IsLmHead(std::string_view name) {
  std::size_t dot = name.rfind('.');
  std::string_view last = dot == std::string_view::npos ? name : name.substr(dot + 1);
  if (last == "lm_head") return true;
  if (dot == std::string_view::npos) return false;
  std::string_view parent = name.substr(0, dot);
  std::size_t pdot = parent.rfind('.');
  return (pdot == std::string_view::npos ? parent : parent.substr(pdot + 1)) == "lm_head";
}

}  // namespace shardload::tp
